"""The sans-IO response reader both senders use: framing, limits, and what makes a connection reusable.

Every answer is fed whole, one byte at a time, and split at every point: the result must not
depend on how the bytes arrive.
"""
import pytest

from webhooklite._response import MAX_HEAD, ProtocolError, ResponseReader

CAP = 64 * 1024


def read_all(data: bytes, eof: bool = False, cap: int = CAP):
    """The reader after ``data`` fed whole, byte by byte and in every two-piece split: all must agree."""
    results = []
    feeds = [[data], [data[i:i + 1] for i in range(len(data))]]
    feeds += [[data[:i], data[i:]] for i in range(1, len(data), max(1, len(data) // 40))]
    for pieces in feeds:
        r = ResponseReader(cap)
        for piece in pieces:
            r.feed(piece)
        if eof:
            r.feed_eof()
        results.append((r.done, r.status, r.reason, r.headers, r.body, r.reusable, r.truncated))
    assert all(x == results[0] for x in results), results
    return results[0]


def test_content_length():
    done, status, reason, headers, body, reusable, _ = read_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
    assert (done, status, reason, body, reusable) == (True, 200, "OK", b'{"ok":true}', True)
    assert headers == {"content-type": "application/json", "content-length": "11"}


def test_chunked_with_extensions_and_trailers():
    data = (b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\nRetry-After: 5\r\n\r\n"
            b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n")
    done, status, reason, headers, body, reusable, _ = read_all(data)
    assert (done, status, body, reusable) == (True, 503, b"hello world", True)
    assert headers["retry-after"] == "5"


def test_until_close_and_http10():
    data = b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\nbody until the end"
    assert read_all(data)[0] is False  # not done until the server closes
    done, status, _, _, body, reusable, _ = read_all(data, eof=True)
    assert (done, status, body, reusable) == (True, 200, b"body until the end", False)
    done, _, _, _, body, reusable, _ = read_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert done and body == b"ok" and not reusable  # HTTP/1.0 without keep-alive closes
    assert read_all(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok")[5]


def test_connection_close_and_no_body_statuses():
    assert read_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")[5] is False
    for status in (204, 304):
        done, st, _, _, body, reusable, _ = read_all(f"HTTP/1.1 {status} X\r\nContent-Length: 5\r\n\r\n".encode())
        assert (done, st, body, reusable) == (True, status, b"", True)


def test_interim_answers_are_skipped_and_bare_lf_is_read():
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    done, status, _, headers, _, reusable, _ = read_all(data)
    assert (done, status, reusable) == (True, 201, True) and "link" not in headers
    done, status, reason, headers, body, _, _ = read_all(b"HTTP/1.1 404\nA: 1\n  folded\n\nxx", eof=True)
    assert (status, reason, headers["a"], body) == (404, "", "1 folded", b"xx")


def test_repeated_headers_are_joined_and_equal_lengths_accepted():
    done, _, _, headers, body, _, _ = read_all(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nVary: a\r\nvary: b\r\n\r\nok")
    assert done and body == b"ok" and headers["vary"] == "a, b"


def test_the_body_is_capped_and_the_connection_not_reused():
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
    done, _, _, _, body, reusable, truncated = read_all(data, cap=30)
    assert (done, body, reusable, truncated) == (True, b"x" * 30, False, True)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"10\r\n" + b"y" * 16 + b"\r\n" * 1 + b"0\r\n\r\n"
    assert read_all(chunked, cap=10)[4] == b"y" * 10


def test_anything_after_the_answer_makes_the_connection_unusable():
    r = ResponseReader(CAP)
    assert r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")
    assert r.body == b"ok" and not r.reusable
    r = ResponseReader(CAP)
    assert r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") and r.reusable
    r.feed(b"x")
    assert not r.reusable


def test_chunked_and_content_length_closes_after():
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    done, _, _, _, body, reusable, _ = read_all(data)
    assert done and body == b"ok" and not reusable


@pytest.mark.parametrize("data, words", [
    (b"HTTP/1.1 2000 OK\r\n\r\n", "status line"),
    (b"HTTP/2 200 OK\r\n\r\n", "status line"),
    (b"ICY 200 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 200 OK\r\nContent Length: 5\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\nNo-Colon\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n", "CR or NUL"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n", "CRLF"),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"),
    (b"HTTP/1.1 200 OK\r\n folded-first: x\r\n\r\n", "folded"),
])
def test_malformed_answers_are_refused(data, words):
    with pytest.raises(ProtocolError, match=words):
        r = ResponseReader(CAP)
        for i in range(len(data)):
            r.feed(data[i:i + 1])


def test_heads_are_bounded():
    r = ResponseReader(CAP)
    r.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(ProtocolError, match="larger than"):
        for _ in range(MAX_HEAD // 1000 + 2):
            r.feed(b"X-A: " + b"a" * 995 + b"\r\n")
    many = b"HTTP/1.1 200 OK\r\n" + b"A: 1\r\n" * 101 + b"\r\n"
    with pytest.raises(ProtocolError, match="more than 100"):
        ResponseReader(CAP).feed(many)


def test_eof_before_the_end_is_not_done():
    r = ResponseReader(CAP)
    r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert not r.feed_eof() and not r.done and r.started
    r = ResponseReader(CAP)
    assert not r.feed_eof() and not r.started


def test_a_name_seen_before_still_needs_its_colon():
    assert read_all(b"HTTP/1.1 200 OK\r\nX-Seen: 1\r\nContent-Length: 0\r\n\r\n")[0]
    with pytest.raises(ProtocolError, match="header line"):
        ResponseReader(CAP).feed(b"HTTP/1.1 200 OK\r\nX-Seen\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ProtocolError, match="CR or NUL"):
        ResponseReader(CAP).feed(b"HTTP/1.1 200 OK\r\nX-Seen: a\rb\r\nContent-Length: 0\r\n\r\n")
