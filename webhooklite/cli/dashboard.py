"""``dashboard DB``: a web page for the outbox and the inbox in DB, on 127.0.0.1, behind a token.

    python -m webhooklite dashboard webhooks.db                  # http://127.0.0.1:8080/?token=...
    python -m webhooklite dashboard postgresql://app@db/app --port 9000

DB is opened as the ``outbox`` and ``inbox`` commands open it (``admin.open_part``: nothing is
created for a typo, a foreign file is refused); the page shows the outbox, the inbox, or both,
whichever the database holds. The first line printed is the URL to open, with its token (as
Jupyter prints it). Ctrl-C or SIGTERM stops it. See ``webhooklite/dashboard/`` for the page.
"""
import argparse
import errno
import os
import sys
from typing import Any, Dict, Optional

from . import admin, options
from .output import OK, Failure, Style, UsageError, write

__all__ = ["register", "open_parts"]


def open_parts(target: str) -> Dict[str, Any]:
    """{"outbox": Outbox, "inbox": Inbox}: the parts DB holds (at least one; UsageError otherwise)."""
    from ..backends import is_url

    if not is_url(target) and not os.path.exists(target):
        raise UsageError(f"no such file: {target} (give an outbox's or an inbox's sqlite file, or a postgresql:// URL)")
    found: Dict[str, Any] = {}
    errors: Dict[str, str] = {}
    for part in ("outbox", "inbox"):
        try:
            found[part] = admin.open_part(target, part)
        except UsageError as e:
            errors[part] = str(e)
    if not found:
        # The same complaint for both parts ("... is not a webhooklite outbox") is said once, for both.
        if errors["inbox"] == errors["outbox"].replace("outbox", "inbox"):
            raise UsageError(errors["outbox"].replace("outbox", "outbox or inbox", 1))
        raise UsageError(errors["outbox"])
    return found


def cmd_dashboard(args: argparse.Namespace) -> int:
    from .._signals import until_stopped
    from ..dashboard import Dashboard

    parts = open_parts(args.db)
    style = Style.for_stream(sys.stdout)
    dash: Optional[Dashboard] = None
    try:
        try:
            dash = Dashboard(parts.get("outbox"), parts.get("inbox"), host=args.host, port=args.port)
        except OSError as e:
            why = e.strerror or str(e)
            if e.errno == errno.EADDRINUSE:
                why = "the address is already in use (--port 0 picks a free port)"
            raise Failure(f"cannot listen on {args.host}:{args.port}: {why}") from None
        write(dash.url)  # the first line: what to open
        shows = " and the ".join(sorted(parts, reverse=True))
        write(style(f"the dashboard of the {shows} in {dash.where}: open the URL above (it holds the token). "
                    "Ctrl-C to stop.", style.DIM))
        if args.host not in ("127.0.0.1", "::1", "localhost"):
            write(f"webhooklite dashboard: listening on {args.host}, not only this machine: anyone who can reach it "
                  "and has the URL can retry, recover and disable; it is plain HTTP, so the token is not encrypted",
                  sys.stderr)
        with until_stopped():  # Ctrl-C or SIGTERM: exit 0
            dash.serve_forever()
    finally:
        if dash is not None:
            dash.stop()
        for part in parts.values():
            part.close()
    write(style("stopped", style.DIM))
    return OK


def register(sub: "argparse._SubParsersAction[Any]", fmt: Any) -> None:
    """Add ``dashboard DB`` to the command line."""
    p = sub.add_parser(
        "dashboard",
        help="a web page for an outbox and an inbox: endpoint health, deliveries, retries (127.0.0.1, with a token)",
        description="Serve a web page for the outbox and the inbox in DB (a sqlite file or a postgresql:// URL): "
        "endpoints and their health, each delivery's attempts and answers, dead deliveries to retry or recover, "
        "endpoints to disable or enable, and the inbox's dead events to retry or replay. It refreshes itself. The "
        "first line printed is the URL to open: it holds a random token, and every request without it is refused. "
        "Nothing is delivered by the dashboard itself: the outbox's and the inbox's workers do it.",
        formatter_class=fmt,
        epilog="""examples:
  %(prog)s webhooks.db
  %(prog)s postgresql://app@db.internal/app --port 9000""",
    )
    p.add_argument("db", metavar="DB", help="the sqlite file or postgresql:// URL of an outbox, an inbox, or both")
    p.add_argument("--port", type=options.port, default=8080, help="the port (default 8080; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default 127.0.0.1: this machine only)")
    p.set_defaults(func=cmd_dashboard)
