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


def test_head_has_no_body_and_the_next_answer_on_the_connection_stays_in_step(app):
    with app.connect() as s:
        s.sendall(b"HEAD /hooks HTTP/1.1\r\nHost: test\r\n\r\n" + request("msg_after_head"))
        f = s.makefile("rb")
        status, h, _ = read_answer(f, head_only=True)
        assert status == 405 and h["allow"] == "POST" and int(h["content-length"]) > 0  # GET's length
        assert h.get("connection") != "close"
        # The very next bytes are the POST's answer, not the 405's body.
        status, _, body = read_answer(f)
        assert status == 200 and json.loads(body) == {"status": "ok"}
        s.sendall(b"HEAD /elsewhere HTTP/1.1\r\nHost: test\r\n\r\n" + request("msg_after_404"))
        assert read_answer(f, head_only=True)[0] == 404
        assert read_answer(f)[0] == 200
    assert app.seen == ["msg_after_head", "msg_after_404"]


def test_head_has_no_body_under_wsgi_and_asgi():
    receiver = webhooklite.Receiver(SECRET)
    with wsgi_server(receiver) as server:  # wsgiref does not strip a HEAD answer's body itself
        with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5) as s:
            s.sendall(b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n")
            got, closed = read_all(s, quiet=3)
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 405 ") and b"Content-Length: 51" in head and body == b"", got
    ex = run_asgi(receiver.asgi, asgi_scope("HEAD", "/", []), [])
    start, rest = ex.sent[0], ex.sent[1:]
    assert start["status"] == 405 and (b"content-length", b"51") in start["headers"]
    assert [m.get("body", b"") for m in rest] == [b""]


# -- item 8: Host, field names, the version ---------------------------------------------------------

HOST_CASES = {
    "no Host": request(host=None),
    "two Host lines": request(extra="Host: other\r\n"),
    "two Host lines, same value": request(extra="Host: test\r\n"),
    "Host: a b": request(host="a b"),
    "Host with a slash": request(host="a/b"),
}


@pytest.mark.parametrize("case", sorted(HOST_CASES))
def test_http11_needs_exactly_one_valid_host(app, case):
    raw = refused(app, HOST_CASES[case])
    assert "Host" in error_text(raw)


def test_host_forms_that_are_valid(app):
    for host in ["127.0.0.1:8000", "[::1]:8000", "example.com", "xn--bcher-kva.example", ""]:
        assert exchange(app, request(f"msg_host_{host}", host=host))[0] == [200], host
    # HTTP/1.0 needs none; it is closed after the answer, as 1.0 is by default.
    statuses, raw, closed = exchange(app, request("msg_10", version="HTTP/1.0", host=None))
    assert statuses == [200] and closed and b"Connection: close" in raw


NAME_CASES = {
    "space inside the name": "Content Length: 99\r\n",
    "NUL in the name": "X-A\x00B: 1\r\n",
    "bare CR in the name": "X-A\rB: 1\r\n",
    "parenthesis": "(X-A): 1\r\n",
    "slash": "X/A: 1\r\n",
    "non-ASCII byte": "X-\xe9: 1\r\n",
    "empty name": ": 1\r\n",
    "no colon": "X-A 1\r\n",
    "space before the colon": "Content-Length : 0\r\n",
    "obs-fold": "X-A: 1\r\n  folded\r\n",
    "VT in a value": "X-A: 1\x0b2\r\n",
    "FF in a value": "X-A: \x0c\r\n",
}


@pytest.mark.parametrize("case", sorted(NAME_CASES))
def test_a_field_line_outside_the_grammar_is_400(app, case):
    refused(app, request(extra=NAME_CASES[case]))


def test_a_value_may_hold_obs_text_and_other_control_characters(app):
    # RFC 9110 5.5 lets a recipient keep them; h11 does (real cookies carry \x01).
    assert exchange(app, request("msg_ctl", extra="X-A: caf\xe9 \x01 \t x\r\n"))[0] == [200]


@pytest.mark.parametrize("line", [
    "POST /hooks HTTP/1.1junk", "POST /hooks HTTP/1.1 ", "POST /hooks  HTTP/1.1", "POST /hooks http/1.1",
    "POST /hooks HTTP/11", "PO(ST /hooks HTTP/1.1", "POST /ho\x00oks HTTP/1.1", "POST\t/hooks HTTP/1.1",
])
def test_a_malformed_request_line_is_400(app, line):
    data = request().replace(b"POST /hooks HTTP/1.1", line.encode("latin-1"), 1)
    refused(app, data)


def test_another_major_version_is_505_and_a_higher_minor_is_served_as_1_1(app):
    refused(app, request().replace(b"HTTP/1.1", b"HTTP/2.0", 1), status=505)
    assert exchange(app, request("msg_12").replace(b"HTTP/1.1", b"HTTP/1.2", 1))[0] == [200]


# -- item 8: framing -----------------------------------------------------------------------------

TE_CASES = {
    # RFC 9112 6.3: chunked is not the final coding, so the length is unknown: 400, then close.
    "chunked, gzip": (" chunked, gzip", "", 400),
    "gzip": (" gzip", "", 400),
    "identity": (" identity", "", 400),
    "chunked twice": (" chunked, chunked", "", 400),
    "chunked on two lines": (" chunked", "Transfer-Encoding: chunked\r\n", 400),
    "empty": (" ", "", 400),
    "not a token": (' chun"ked', "", 400),
    # 6.1: a coding it does not understand, before chunked: 501 (and close: the body is unread).
    "gzip, chunked": (" gzip, chunked", "", 501),
}


@pytest.mark.parametrize("case", sorted(TE_CASES))
def test_transfer_codings_other_than_chunked(app, case):
    te, extra, status = TE_CASES[case]
    refused(app, request(te=te, extra=extra), status=status)


def test_chunked_in_any_case_with_list_spaces_is_accepted(app):
    for n, te in enumerate(["chunked", " Chunked", " chunked\t", " , chunked", "CHUNKED"]):
        assert exchange(app, request(f"msg_te{n}", te=te))[0] == [200], te
    assert len(app.seen) == 5


def test_http10_with_transfer_encoding_is_answered_then_closed(app):
    data = request("msg_10te", version="HTTP/1.0", te=" chunked", extra="Connection: keep-alive\r\n")
    statuses, raw, closed = exchange(app, data + request("msg_next"))
    assert statuses == [200] and closed, raw[:300]  # RFC 9112 6.1: faulty framing, close after it
    assert b"Connection: close" in raw
    assert app.seen == ["msg_10te"]


@pytest.mark.parametrize("case", [
    b"5\nhello\r\n0\r\n\r\n",  # bare LF after the size
    b"5\r\nhello\r\n0\n\r\n",  # bare LF after the last chunk's size
    b"5\r\nhello\r\n0\r\n\n",  # bare LF ending the chunked body
    b"5;ext\nx\r\nhello\r\n0\r\n\r\n",  # a bare LF inside an extension
    b"5 \r\nhello\r\n0\r\n\r\n",  # white space with no extension
    b" 5\r\nhello\r\n0\r\n\r\n",  # white space before the size
    b"5;a=b c\r\nhello\r\n0\r\n\r\n",  # an extension value that is neither token nor quoted
    b"5\r\nhello\n0\r\n\r\n",  # chunk data ended by a bare LF
    b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n",  # a trailer line ended by a bare LF
    b"5\r\nhello\r\n0\r\nX T: 1\r\n\r\n",  # a trailer name that is not a token
])
def test_chunk_lines_need_crlf_and_the_grammar(app, case):
    refused(app, request(te=" chunked", payload=case))


def test_chunk_extensions_and_trailers_in_the_grammar_are_accepted():
    receiver = webhooklite.Receiver(None)
    bodies = []
    receiver.on("*", lambda event: bodies.append(event.body))
    with receiver.start(**OPTIONS) as server:
        for n, (size_line, trailer) in enumerate([
            (b"d;name\r\n", b""), (b"d ; a=b ; c = \"q \\\" d\"\r\n", b"X-T: 1\r\n"), (b"00000d\r\n", b""),
        ]):
            body = b'{"event":"%d"}' % n
            assert len(body) == 13
            data = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            data += size_line + body + b"\r\n0\r\n" + trailer + b"\r\n"
            with socket.create_connection((server.host, server.port), timeout=5) as s:
                s.sendall(data)
                assert read_answer(s.makefile("rb"))[0] == 200
    assert bodies == [b'{"event":"0"}', b'{"event":"1"}', b'{"event":"2"}']


def test_http10_expect_100_continue_gets_no_100(app):
    h, b = signed(msg_id="msg_expect10")
    head = "POST /hooks HTTP/1.0\r\nExpect: 100-continue\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
    head += f"Content-Length: {len(b)}\r\n\r\n"
    with app.connect() as s:
        s.sendall(head.encode())
        early, closed = read_all(s, quiet=0.5)
        assert early == b"" and not closed  # no 1xx to HTTP/1.0 (RFC 9110 15.2): it waits for the body
        s.sendall(b)
        got, _ = read_all(s)
    assert got.startswith(b"HTTP/1.1 200 ") and b" 100 " not in got
    # HTTP/1.1 still gets its 100 Continue.
    with app.connect() as s:
        s.sendall(request("msg_expect11", extra="Expect: 100-continue\r\n").split(b"\r\n\r\n")[0] + b"\r\n\r\n")
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.mark.parametrize("target, status", [
    ("http://test/hooks", 200),
    ("http://127.0.0.1:8000/hooks?source=store", 200),
    ("HTTPS://test/hooks", 200),
    ("http://test/other", 404),
    ("http://test", 404),
])
def test_absolute_form_target_matches_the_receiver_path(app, target, status):
    statuses, raw, _ = exchange(app, request("msg_abs", target=target))
    assert statuses == [status], raw[:300]
    assert app.seen == (["msg_abs"] if status == 200 else [])


def test_http10_keep_alive_is_echoed_and_kept(app):
    with app.connect() as s:
        f = s.makefile("rb")
        for n in range(3):
            s.sendall(request(f"msg_ka10_{n}", version="HTTP/1.0", extra="Connection: keep-alive\r\n"))
            status, h, _ = read_answer(f)
            assert status == 200 and h.get("connection") == "keep-alive"
        s.sendall(request("msg_ka10_last", version="HTTP/1.0"))  # no keep-alive asked: closed after
        status, h, _ = read_answer(f)
        assert status == 200 and h.get("connection") == "close"
        assert f.read(1) == b""
    # HTTP/1.1 says nothing when it keeps the connection, and closes on "close" among other options.
    with app.connect() as s:
        f = s.makefile("rb")
        s.sendall(request("msg_11"))
        assert "connection" not in read_answer(f)[1]
        s.sendall(request("msg_11_close", extra="Connection: upgrade, Close\r\n"))
        assert read_answer(f)[1].get("connection") == "close"
        assert f.read(1) == b""


# -- Content-Length: one grammar, three transports -------------------------------------------------

LENGTH_CASES = [
    # (header values as sent, on one line each; expected status)
    (["{n}"], 200),
    (["{n}, {n}"], 200),  # a list of one value (RFC 9110 8.6), as h11 reads it
    (["{n}", "{n}"], 200),  # two lines, the same value
    (["{n},{n} , {n}"], 200),
    (["{n}, {m}"], 400),
    (["{n}", "{m}"], 400),
    (["{n},"], 400),
    (["+{n}"], 400),
    (["{n}\x1c"], 400),  # str.strip() would take it for white space
    (["0x{n}"], 400),
    (["1\xb2"], 400),  # "1²".isdigit(), but not ASCII digits
]


def _length_headers(values, n):
    return [(b"content-length", v.format(n=n, m=n + 1).encode("latin-1")) for v in values]


def _raw_post(port, body, headers, values, n):
    lines = [b"POST / HTTP/1.1", b"Host: test"] + [f"{k}: {v}".encode() for k, v in headers.items()]
    lines += [b"Content-Length: " + v for _, v in _length_headers(values, n)]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        s.shutdown(socket.SHUT_WR)
        got, _ = read_all(s, quiet=3)
    return int(STATUS_LINE.match(got).group(1)), got


@pytest.mark.parametrize("values, status", LENGTH_CASES, ids=[" | ".join(v) for v, _ in LENGTH_CASES])
def test_content_length_is_read_the_same_by_every_transport(values, status):
    receiver = webhooklite.Receiver(SECRET)
    receiver.on("*", lambda e: None)
    answers = {}
    with receiver.start(**OPTIONS) as server:
        h, b = signed()
        answers["server"] = _raw_post(server.port, b, h, values, len(b))[0]
    if len(values) == 1:  # wsgiref itself keeps only the first of two lines
        with wsgi_server(receiver) as server:
            h, b = signed()
            answers["wsgi"] = _raw_post(server.server_address[1], b, h, values, len(b))[0]
    h, b = signed()
    scope = asgi_scope("POST", "/", [(k.lower().encode(), v.encode()) for k, v in h.items()] + _length_headers(values, len(b)))
    answers["asgi"] = run_asgi(receiver.asgi, scope, [b]).answer()[0]
    assert set(answers.values()) == {status}, answers


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


def test_the_fast_header_path_declines_what_the_grammar_refuses():
    server = WebhookServer(webhooklite.Receiver(None))
    try:
        for line in NAME_CASES.values():
            head = b"Host: x\r\n" + line.encode("latin-1") + b"\r\n"
            rfile = io.BufferedReader(io.BytesIO(head), 65536)
            assert server._read_plain_headers(rfile, 8192, 100, 65536) is None, line
            assert rfile.read() == head  # nothing consumed: the line-by-line path refuses it
        rfile = io.BufferedReader(io.BytesIO(b"Host: a\r\nHost: a\r\n\r\n"), 65536)
        assert server._read_plain_headers(rfile, 8192, 100, 65536) is None
    finally:
        server.stop()


# -- request smuggling: conflicting framing is refused, never read as two requests ----------------


def _smuggle(prefix: str, smuggled: bytes, tail: bytes = b"") -> bytes:
    return prefix.replace("\n", "\r\n").replace("\r\r\n", "\r\n").encode("latin-1") + tail + smuggled


SMUGGLED = request("msg_smuggled")
L = len(SMUGGLED)
SMUGGLING_CASES = {
    "CL.TE": _smuggle(f"POST /hooks HTTP/1.1\nHost: t\nContent-Length: {L + 5}\nTransfer-Encoding: chunked\n\n", SMUGGLED, b"0\r\n\r\n"),
    "TE.CL": _smuggle(f"POST /hooks HTTP/1.1\nHost: t\nTransfer-Encoding: chunked\nContent-Length: 4\n\n", SMUGGLED, b"%x\r\n" % L),
    "two CL, different": _smuggle(f"POST /hooks HTTP/1.1\nHost: t\nContent-Length: 0\nContent-Length: {L}\n\n", SMUGGLED),
    "CL list, different": _smuggle(f"POST /hooks HTTP/1.1\nHost: t\nContent-Length: 0, {L}\n\n", SMUGGLED),
    "obs-fold TE": _smuggle(f"POST /hooks HTTP/1.1\nHost: t\nContent-Length: {L + 5}\nTransfer-Encoding: x\n chunked\n\n", SMUGGLED, b"0\r\n\r\n"),
    "obs-fold CL": _smuggle(f"POST /hooks HTTP/1.1\nHost: t\nX-A: 1\n Content-Length: {L}\n\n", SMUGGLED),
    "space before colon": _smuggle(f"POST /hooks HTTP/1.1\nHost: t\nTransfer-Encoding : chunked\nContent-Length: {L + 5}\n\n", SMUGGLED, b"0\r\n\r\n"),
    "VT before chunked": _smuggle(f"POST /hooks HTTP/1.1\nHost: t\nTransfer-Encoding:\x0bchunked\nContent-Length: {L + 5}\n\n", SMUGGLED, b"0\r\n\r\n"),
    "FF after chunked": _smuggle("POST /hooks HTTP/1.1\nHost: t\nTransfer-Encoding: chunked\x0c\n\n", SMUGGLED, b"0\r\n\r\n"),
    "xchunked": _smuggle("POST /hooks HTTP/1.1\nHost: t\nTransfer-Encoding: xchunked\n\n", SMUGGLED, b"0\r\n\r\n"),
    "chunked, identity": _smuggle("POST /hooks HTTP/1.1\nHost: t\nTransfer-Encoding: chunked, identity\n\n", SMUGGLED, b"0\r\n\r\n"),
    "TE on two lines": _smuggle("POST /hooks HTTP/1.1\nHost: t\nTransfer-Encoding: chunked\nTransfer-Encoding: identity\n\n", SMUGGLED, b"0\r\n\r\n"),
    "TE in a leading line": _smuggle(f"POST /hooks HTTP/1.1\n Transfer-Encoding: chunked\nHost: t\nContent-Length: {L + 5}\n\n", SMUGGLED, b"0\r\n\r\n"),
    "bare-LF chunk size": _smuggle("POST /hooks HTTP/1.1\nHost: t\nTransfer-Encoding: chunked\n\n", SMUGGLED, b"2\n0\r\n\r\n"),
    "CL with a sign": _smuggle(f"POST /hooks HTTP/1.1\nHost: t\nContent-Length: +{L}\n\n", SMUGGLED),
    "NUL in the TE name": _smuggle(f"POST /hooks HTTP/1.1\nHost: t\nTransfer-Encoding\x00: chunked\nContent-Length: {L + 5}\n\n", SMUGGLED, b"0\r\n\r\n"),
}


@pytest.mark.parametrize("case", sorted(SMUGGLING_CASES))
def test_conflicting_framing_is_refused_and_never_read_as_two_requests(app, case):
    raw = refused(app, SMUGGLING_CASES[case])  # exactly one status line: one answer, then closed
    assert raw.count(b"HTTP/1.1 ") == 1
    assert "msg_smuggled" not in app.seen


# -- item 9: stop() --------------------------------------------------------------------------------


def test_stop_cuts_a_client_stuck_mid_headers_at_request_timeout():
    receiver = webhooklite.Receiver(SECRET)
    server = receiver.start(request_timeout=1.0, idle_timeout=1.0)
    assert wait_for(lambda: server._watchdog is not None, 2)
    before = set(threading.enumerate())
    s = socket.create_connection((server.host, server.port), timeout=8)
    try:
        s.sendall(b"POST / HTTP/1.1\r\nHost: test\r\nX-Slow: ")  # and then nothing more
        assert wait_for(lambda: len(server._conns) == 1, 2)
        serving = set(threading.enumerate()) - before  # the connection's thread
        assert len(serving) == 1, serving
        start = time.monotonic()
        stopper = threading.Thread(target=server.stop, kwargs={"timeout": 6.0})
        stopper.start()
        assert s.recv(1) == b""  # cut off by the watchdog that stop() keeps running
        cut = time.monotonic() - start
        stopper.join(8)
        assert not stopper.is_alive()
        assert cut < 1.0 + 1.5, cut  # request_timeout and a watchdog tick; not stop's 6 s
        assert time.monotonic() - start < 4.0  # stop() returns once the connection is gone
        assert wait_for(lambda: not any(t.is_alive() for t in serving), 2)  # its thread ended too
    finally:
        s.close()
        server.stop()


def test_stop_closes_everything_at_its_deadline():
    receiver = webhooklite.Receiver(SECRET)
    server = receiver.start(request_timeout=30.0, idle_timeout=30.0)
    s = socket.create_connection((server.host, server.port), timeout=8)
    try:
        s.sendall(b"POST / HTTP/1.1\r\nHost: test\r\n")
        time.sleep(0.2)
        start = time.monotonic()
        server.stop(timeout=1.0)
        assert time.monotonic() - start < 3.0
        s.settimeout(2)
        assert s.recv(1) == b""  # closed at stop's deadline, long before request_timeout
    finally:
        s.close()


def test_answers_written_while_stopping_say_connection_close():
    release = threading.Event()
    entered = threading.Event()
    receiver = webhooklite.Receiver(SECRET)

    @receiver.on("*")
    def slow(event):
        entered.set()
        release.wait(5)

    server = receiver.start(**OPTIONS)
    try:
        with socket.create_connection((server.host, server.port), timeout=5) as s:
            s.sendall(request("msg_stopping", target="/"))
            assert entered.wait(5)
            stopper = threading.Thread(target=server.stop, kwargs={"timeout": 5.0})
            stopper.start()
            assert wait_for(lambda: server._stopping.is_set(), 2)
            release.set()
            f = s.makefile("rb")
            status, h, _ = read_answer(f)
            assert status == 200 and h.get("connection") == "close"
            assert f.read(1) == b""
            stopper.join(6)
            assert not stopper.is_alive()
    finally:
        release.set()
        server.stop()
