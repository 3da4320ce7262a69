"""A web page for an outbox and an inbox: endpoint health, deliveries and their attempts, dead ones to retry.

    python -m webhooklite dashboard webhooks.db          # or a postgresql:// URL; prints its URL with a token

or from Python::

    from webhooklite.dashboard import Dashboard
    with Dashboard(outbox, inbox, port=0) as dash:       # either may be None
        print(dash.url)                                  # http://127.0.0.1:PORT/?token=...

Standard library only (``http.server``), no build step: ``server.py`` (the token, the routes,
the actions), ``views.py`` (what is read, through the Outbox's and Inbox's public API),
``pages.py`` (the HTML, made with ``markup.py``, the one place that escapes) and ``static/`` (the page
template, a stylesheet, and the script that refreshes the page). Not loaded by ``import webhooklite``.
"""
from .server import Dashboard

__all__ = ["Dashboard"]
