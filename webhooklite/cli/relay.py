"""Passing a request on: which headers a relay keeps, and the one POST that sends them.

``listen --forward-to`` and ``replay`` send a request with exactly the headers
they were given (no signing, no retry): :func:`post` is that request, made by
the Sender (the command line has no HTTP client of its own).
"""
from typing import Dict, Mapping, Optional, Set, Tuple

from ..sender import Retry, Sender
from .output import Failure

__all__ = ["HOP_BY_HOP", "relay_headers", "post"]

#: Headers that belong to one connection, not to the message: never relayed.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
     "host", "content-length", "expect"}
)


def relay_headers(h: Mapping[str, str]) -> Dict[str, str]:
    """The headers of a request worth passing on: all but the hop-by-hop ones.

    Those are the fixed set above and every header the request's own
    ``Connection`` names (RFC 9110 section 7.6.1: a relay drops them), e.g.
    ``Connection: close, X-Internal-Token``. ``h`` may have one ``Connection``
    value with repeated lines already joined by ``", "`` (as :class:`Headers`).
    """
    named: Set[str] = set()
    for k, v in h.items():
        if k.lower() == "connection":
            named.update(t.strip().lower() for t in v.split(","))
    return {k: v for k, v in h.items() if k.lower() not in HOP_BY_HOP and k.lower() not in named}


def post(url: str, headers: Mapping[str, str], body: bytes, timeout: float,
         sender: Optional[Sender] = None) -> Tuple[int, Dict[str, str], bytes]:
    """One POST with exactly these headers (no signing, no retry): status, headers, body (capped).

    It is :meth:`Sender.relay`, the package's one HTTP client (its timeouts, its
    response cap); ``sender`` reuses a Sender's kept-alive connections to ``url``.
    A transport error is a :class:`Failure` in words (``connection refused``).
    """
    if sender is None:
        with Sender(url, timeout=timeout, retry=Retry(attempts=1)) as one:
            d = one.relay(body, headers)
    else:
        d = sender.relay(body, headers)
    if d.status is None:
        raise Failure(d.error or "no answer")
    return d.status, d.response_headers, d.response_body
