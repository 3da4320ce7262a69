"""Strict where RFC 9112 / RFC 9110 are strict (issue 10, items 7 to 9), on real sockets.

Every refusal is checked the way a client sees it (the status, and whether the
connection is closed after it), and is followed by a good request on a fresh
connection, which must be handled: the server keeps serving. One grammar
(``webhooklite.headers``) serves the built-in server, WSGI and ASGI; the
Content-Length cases run against all three.
"""
import asyncio
import io
import json
import re
import socket
import threading
import time
from typing import Dict, List, Optional, Tuple

import pytest

import webhooklite
from conftest import SECRET, signed, wait_for
from transports import asgi_scope, run_asgi, wsgi_server
from webhooklite import headers as grammar
from webhooklite.server import WebhookServer

OPTIONS = dict(request_timeout=2.0, idle_timeout=2.0)
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


class App:
    """A receiver on /hooks that records the ids its handler saw, served on loopback."""

    def __init__(self, path: Optional[str] = "/hooks", **options) -> None:
        self.receiver = webhooklite.Receiver(SECRET, path=path)
        self.seen: List[str] = []
        self.receiver.on("*", lambda event: self.seen.append(event.id))
        self.server = self.receiver.start(**dict(OPTIONS, **options))

    def connect(self) -> socket.socket:
        return socket.create_connection((self.server.host, self.server.port), timeout=5)


@pytest.fixture
def app():
    a = App()
    try:
        yield a
    finally:
        a.server.stop()


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def request(msg_id: Optional[str] = None, *, target: str = "/hooks", version: str = "HTTP/1.1",
            host: Optional[str] = "test", extra: str = "", te: Optional[str] = None,
            payload: Optional[bytes] = None) -> bytes:
    """A signed POST as raw bytes; ``extra``: more header lines (CRLF-ended).

    With ``te``, a ``Transfer-Encoding: <te>`` line and the body chunked (or ``payload``
    as it is); without, a Content-Length.
    """
    h, b = signed(msg_id=msg_id)
    lines = [f"POST {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in h.items()]
    if te is None:
        lines.append(f"Content-Length: {len(b)}")
    else:
        lines.append(f"Transfer-Encoding:{te}")
        b = chunked(b) if payload is None else payload
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode("latin-1") + b


def read_answer(f, head_only: bool = False) -> Tuple[int, Dict[str, str], bytes]:
    """One answer from a socket file: (status, lower-case headers, body); HEAD answers have none."""
    line = f.readline()
    if not line:
        raise ConnectionError("the server closed the connection")
    status = int(line.split()[1])
    headers: Dict[str, str] = {}
    while True:
        h = f.readline()
        if h in (b"\r\n", b""):
            break
        k, v = h.decode("latin-1").split(":", 1)
        headers[k.strip().lower()] = v.strip()
    body = b"" if head_only or 100 <= status < 200 else f.read(int(headers.get("content-length", 0)))
    return status, headers, body


def read_all(s: socket.socket, quiet: float = 1.0) -> Tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or stays quiet for ``quiet`` s (False)."""
    s.settimeout(quiet)
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return got, True
            got += chunk
    except socket.timeout:
        return got, False
    except OSError:
        return got, True


def exchange(a: App, data: bytes) -> Tuple[List[int], bytes, bool]:
    """Send ``data`` on a fresh connection, then half-close it (so a kept connection ends at once);
    return (statuses answered, bytes read, whether the server closed it)."""
    with a.connect() as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # answered and closed while we were still sending
        got, closed = read_all(s, quiet=3)
    return [int(m) for m in STATUS_LINE.findall(got)], got, closed


def still_serving(a: App) -> None:
    statuses, raw, _ = exchange(a, request("msg_after"))
    assert statuses == [200] and b'"ok"' in raw, raw[:300]
    a.seen.remove("msg_after")
    a.receiver.store = type(a.receiver.store)()  # forget it, so the next check is not a duplicate


def refused(a: App, data: bytes, status: int = 400) -> bytes:
    """``data`` is answered ``status`` alone, the connection closed, no handler ran; then a good request works."""
    statuses, raw, closed = exchange(a, data)
    assert statuses == [status], raw[:400]
    assert closed and b"Connection: close" in raw, raw[:400]
    assert a.seen == [], "a refused request reached a handler"
    still_serving(a)
    return raw


def error_text(raw: bytes) -> str:
    head, _, body = raw.partition(b"\r\n\r\n")
    return json.loads(body[: int(re.search(rb"Content-Length: (\d+)", head).group(1))])["error"]


# -- item 7: HEAD ---------------------------------------------------------------------------------


# -- item 8: Host, field names, the version ---------------------------------------------------------

# -- item 8: framing -----------------------------------------------------------------------------

# -- Content-Length: one grammar, three transports -------------------------------------------------

def test_the_grammar_functions():
    assert grammar.is_token("Content-Length") and grammar.is_token("x!#$%&'*+.^_`|~")
    for bad in ["", "Content Length", "a\x00", "a\r", "(", "a:b", "caf\xe9", "a\n"]:
        assert not grammar.is_token(bad), bad
    assert grammar.is_field_value("") and grammar.is_field_value("a b\t\x01\xff")
    for bad in ["a\rb", "a\nb", "\x00", "\x0b", "\x0c", "\u0100"]:
        assert not grammar.is_field_value(bad), bad
    assert grammar.parse_content_length("13, 13") == 13 and grammar.parse_content_length("0") == 0
    for bad in ["", ",", "13, 14", "-1", "1e3", " ", "1" * 19, "13;x"]:
        assert grammar.parse_content_length(bad) is None, bad
    assert grammar.parse_chunk_size("1F\r\n") == 31 and grammar.parse_chunk_size("0;x=\"\"\r\n") == 0
    for bad in ["1F\n", "\r\n", "g\r\n", "1" * 17 + "\r\n", "1;\r\n", "1;x=\r\n"]:
        assert grammar.parse_chunk_size(bad) is None, bad
    assert grammar.origin_path("http://h:1/a/b?c=d") == "/a/b?c=d" and grammar.origin_path("/x") == "/x"
    assert grammar.parse_request_line("GET / HTTP/1.0\n") == ("GET", "/", "1.0")


# -- request smuggling: conflicting framing is refused, never read as two requests ----------------


# -- item 9: stop() --------------------------------------------------------------------------------


