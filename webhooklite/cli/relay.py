"""Passing a request on: which headers a relay keeps, and the one POST that sends them.

``listen --forward-to`` and ``replay`` send a request with exactly the headers
they were given (no signing, no retry): :func:`post` is that request, the one
place the command line opens an HTTP connection of its own.
"""
from typing import Dict, Mapping, Set, Tuple
from urllib.parse import urlsplit

from ..sender import RESPONSE_CAP, _describe
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


def post(url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> Tuple[int, Dict[str, str], bytes]:
    """One POST with exactly these headers (no signing, no retry): status, headers, body (capped).

    A transport error is a :class:`Failure` in words (``connection refused``).
    """
    import http.client

    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "", parts.port, timeout=timeout)  # check_url() saw a host
    try:
        conn.request("POST", target, body, dict(headers))
        resp = conn.getresponse()
        data = resp.read(RESPONSE_CAP)
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    except Exception as exc:  # every transport error becomes words
        words, _ = _describe(exc, timeout)
        raise Failure(words) from None
    finally:
        conn.close()
