"""Hostile input against a live server on loopback: nothing crashes, nothing leaks, nobody gets in.

Every request here goes over a real socket to ``Receiver.start()``. The server
is configured with short timeouts (``request_timeout=2``, ``idle_timeout=1``)
so that slow clients are cut off within seconds.
"""
import json
import logging
import os
import random
import re
import selectors
import socket
import threading
import time
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

import webhooklite
from webhooklite.server import WebhookServer
from webhooklite.signing import new_message_id

SECRET = "whsec_aG9zdGlsZS1pbnB1dC10ZXN0LXNlY3JldC0zMmJ5dGVzIQ=="
KEY_TEXT = "aG9zdGlsZS1pbnB1dC10ZXN0LXNlY3JldC0zMmJ5dGVzIQ"  # what must never show up anywhere
OPTIONS = dict(request_timeout=2.0, idle_timeout=1.0)


class LogRecorder(logging.Handler):
    """Keeps (level, formatted line) of each record: not the records, which hold exceptions."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: List[Tuple[int, str]] = []
        self._lines_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        with self._lines_lock:
            self.lines.append((record.levelno, line))

    def texts(self) -> List[str]:
        with self._lines_lock:
            return [line for _, line in self.lines]

    def errors(self) -> List[str]:
        with self._lines_lock:
            return [line for level, line in self.lines if level >= logging.ERROR]


@pytest.fixture
def logs() -> Iterator[LogRecorder]:
    logger = logging.getLogger("webhooklite")
    rec = LogRecorder()
    rec.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(rec)
    try:
        yield rec
    finally:
        logger.removeHandler(rec)
        logger.setLevel(old_level)
    # Nothing about the secret, and no traceback of ours, in any log line.
    for text in rec.texts():
        assert KEY_TEXT not in text and SECRET not in text


class App:
    """A receiver with a catch-all handler that records what got through."""

    def __init__(self, **receiver_options) -> None:
        self.receiver = webhooklite.Receiver(SECRET, **receiver_options)
        self.seen: List[webhooklite.Event] = []
        self.lock = threading.Lock()
        self.receiver.on("*", self._record)

    def _record(self, event: webhooklite.Event) -> None:
        with self.lock:
            self.seen.append(event)


@pytest.fixture
def app() -> Iterator[Tuple[App, "WebhookServer"]]:
    a = App()
    with a.receiver.start(**OPTIONS) as server:
        yield a, server


def sign(body: bytes, msg_id: Optional[str] = None) -> Dict[str, str]:
    headers = {"Content-Type": "application/json"}
    headers.update(webhooklite.sign(body, SECRET, msg_id=msg_id or new_message_id()))
    return headers


def head(body: bytes, headers: Dict[str, str], target: str = "/") -> bytes:
    lines = [f"POST {target} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def signed_request(body: bytes, msg_id: Optional[str] = None) -> bytes:
    return head(body, sign(body, msg_id)) + body


def exchange(server, data: bytes, *, half_close: bool = False, timeout: float = 5.0) -> Tuple[List[int], bytes, bool]:
    """Send raw bytes; return (statuses answered, everything read, whether the server closed).

    Reads until the server closes or stays quiet for 1.5 s (then "closed" is False).
    """
    s = socket.create_connection((server.host, server.port), timeout=timeout)
    try:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and closed while we were still sending
        got = b""
        closed = False
        s.settimeout(1.5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            got += chunk
        statuses = [int(m) for m in re.findall(rb"(?:^|\r\n)HTTP/1\.1 (\d{3}) ", got)]
        return statuses, got, closed
    finally:
        s.close()


def answer_body(raw: bytes) -> dict:
    head_end = raw.index(b"\r\n\r\n") + 4
    length = int(re.search(rb"Content-Length: (\d+)", raw[:head_end]).group(1))
    return json.loads(raw[head_end:head_end + length])


def good_answer(server, msg: str = "ping") -> Tuple[int, float]:
    """One normal signed request over a fresh connection: (status, seconds)."""
    body = webhooklite.events.encode_event("normal.ping", {"n": msg})
    start = time.monotonic()
    statuses, raw, _ = exchange(server, signed_request(body), half_close=True, timeout=5)
    return (statuses[0] if statuses else 0), time.monotonic() - start


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# -- each limit: the right status, the connection closed where needed ------------------------

BIG = 100 * 1024

LIMIT_CASES = {
    "100 KB request line": (b"POST /" + b"a" * BIG + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "100 KB header line": (b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * BIG + b"\r\n\r\n", 431),
    "10,000 headers": (b"POST / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(10_000)) + b"\r\n", 431),
    "70 KB of headers in 7 KB lines": (b"POST / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: " % i + b"v" * 7000 + b"\r\n" for i in range(10)) + b"\r\n", 431),
    "huge Content-Length, no body": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999999\r\n\r\n", 413),
    "Content-Length over max_body, body sent": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n" + b"x" * 2_000_000, 413),
    "Content-Length not a number": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n", 400),
    "Content-Length negative": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    "Content-Length 20 digits": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
    "conflicting Content-Lengths": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    "Content-Length and chunked": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "unknown transfer coding": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    "chunk size not hex": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
    "chunk size 0x5": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk size with underscore": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0_5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk size +5": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk longer than its size": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", 400),
    "chunk size line 2 KB": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;" + b"e" * 2048 + b"\r\nhello\r\n0\r\n\r\n", 400),
    "chunked total over max_body": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"80000\r\n" + b"x" * 0x80000 + b"\r\n" + b"80001\r\n" + b"x" * 0x80001 + b"\r\n0\r\n\r\n", 413),
    "chunk size 2**64": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nhello\r\n0\r\n\r\n", 413),
    "obs-fold header": (b"POST / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\nContent-Length: 0\r\n\r\n", 400),
    "bare CR in a header value": (b"POST / HTTP/1.1\r\nHost: x\r\nX-A: 1\rX-B: 2\r\nContent-Length: 0\r\n\r\n", 400),
    "NUL in a header value": (b"POST / HTTP/1.1\r\nHost: x\r\nX-A: 1\x002\r\nContent-Length: 0\r\n\r\n", 400),
    "space before the colon": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n", 400),
    "malformed request line": (b"POST /\r\n\r\n", 400),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),  # RFC 9110 15.6.6: another major version
    "TLS handshake on the plain port": (bytes.fromhex("16030100a5010000a10303") + os.urandom(64) + b"\n", 400),
    "headers cut off": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Le", 400),
}


@pytest.mark.parametrize("case", sorted(LIMIT_CASES))
def test_limit_is_answered_and_the_connection_closed(app, logs, case):
    _, server = app
    data, status = LIMIT_CASES[case]
    statuses, raw, closed = exchange(server, data, half_close=case == "headers cut off")
    assert statuses == [status], raw[:300]
    assert closed, "a refused request must end its connection"
    assert b"Connection: close" in raw
    error = answer_body(raw)["error"]
    assert error and "Traceback" not in error and "/" not in error.replace("/1.", "")
    assert not logs.errors()
    assert good_answer(server)[0] == 200


def test_limits_are_options_with_their_documented_defaults():
    receiver = webhooklite.Receiver(SECRET)
    with receiver.start() as server:
        assert (server.max_request_line, server.max_header_line, server.max_headers, server.max_header_bytes) == (
            8192, 8192, 100, 65536,
        )
        assert (server.request_timeout, server.idle_timeout, server.max_connections) == (30.0, 15.0, 512)
    opts = dict(max_request_line=100, max_header_line=50, max_headers=3, max_header_bytes=120)
    with webhooklite.Receiver(SECRET, max_body=10).start(**opts) as server:
        assert exchange(server, b"POST /" + b"a" * 100 + b" HTTP/1.1\r\n\r\n")[0] == [414]
        assert exchange(server, b"POST / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 50 + b"\r\n\r\n")[0] == [431]
        assert exchange(server, b"POST / HTTP/1.1\r\nHost: x\r\n" + b"X-A: 1\r\n" * 4 + b"\r\n")[0] == [431]
        assert exchange(server, b"POST / HTTP/1.1\r\nHost: x\r\n" + (b"X-A: " + b"a" * 40 + b"\r\n") * 3 + b"\r\n")[0] == [431]
        assert exchange(server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n" + b"x" * 11)[0] == [413]
        assert exchange(server, b"POST / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nContent-Length: 2\r\n\r\n{}", half_close=True)[0] == [401]
    with pytest.raises(ValueError):
        webhooklite.Receiver(SECRET).start(max_connections=0)
    with pytest.raises(ValueError):
        webhooklite.Receiver(SECRET).start(request_timeout=0)


def test_a_sender_sees_413_not_a_reset_when_its_body_is_too_big():
    receiver = webhooklite.Receiver(SECRET, max_body=1000)
    with receiver.start(**OPTIONS) as server:
        with webhooklite.Sender(server.url, SECRET, retry=webhooklite.Retry(attempts=1), timeout=5) as sender:
            d = sender.send("big", {"blob": "x" * 3_000_000})
    assert d.status == 413 and not d.retryable, d


# -- bodies: signed, so they reach the parser ---------------------------------------------------


def test_invalid_utf8_body_is_400(app, logs):
    _, server = app
    body = b'{"event": "x", "name": "\xff\xfe\xc3("}'
    statuses, raw, _ = exchange(server, signed_request(body), half_close=True)
    assert statuses == [400]
    assert "UTF-8" in answer_body(raw)["error"]


@pytest.mark.parametrize("shape", ["[", '{"a":'])
def test_100000_deep_json_is_400_not_a_crash(app, logs, shape):
    a, server = app
    depth = 100_000
    body = shape.encode() * depth + b"1" + (b"]" if shape == "[" else b"}") * depth
    statuses, raw, _ = exchange(server, signed_request(body), half_close=True)
    assert statuses == [400]
    assert "nested too deeply" in answer_body(raw)["error"]
    # Form-encoded (GitHub style) goes through the same parser.
    form = b"payload=" + b"%5B" * depth
    h = sign(form)
    h["Content-Type"] = "application/x-www-form-urlencoded"
    assert exchange(server, head(form, h) + form, half_close=True)[0] == [400]
    # A deep body with a wrong signature is 401, and the diagnosis does not crash either.
    h = sign(b"{}")
    assert exchange(server, head(body, h) + body, half_close=True)[0] == [401]
    assert not a.seen and not logs.errors()


@pytest.mark.parametrize("body", [b"[1, 2]", b"5", b'"text"', b"null", b"true"])
def test_json_that_is_not_an_object_is_accepted_with_type_none(app, body):
    a, server = app
    statuses, _, _ = exchange(server, signed_request(body), half_close=True)
    assert statuses == [200]
    assert [(e.type, e.data) for e in a.seen] == [(None, json.loads(body))]


def test_invalid_utf8_in_headers_and_target(app, logs):
    a, server = app
    body = webhooklite.events.encode_event("hdr.test", {})
    h = sign(body)
    raw_head = head(body, h, target="/\xff\xfe").replace(b"Host: test", b"Host: test\r\nX-Junk: \xff\xfe\xc3(")
    statuses, _, _ = exchange(server, raw_head + body, half_close=True)
    assert statuses == [200]  # header bytes are kept as latin-1; the signature does not cover them
    assert a.seen[-1].headers["x-junk"] == "\xff\xfe\xc3("
    # Header bytes are read as latin-1 (RFC 9110 obs-text, as WSGI does): an id sent as raw
    # UTF-8 bytes is not the text that was signed, so it is refused, not mangled into a crash.
    h = sign(body, msg_id="msg_\u00e9t\u00e9")
    h["webhook-id"] = h["webhook-id"].encode("utf-8").decode("latin-1")
    statuses, _, _ = exchange(server, head(body, h) + body, half_close=True)
    assert statuses == [401]
    assert not logs.errors()


def test_truncated_requests_are_dropped_quietly(app, logs):
    a, server = app
    body = webhooklite.events.encode_event("cut.off", {"n": 1})
    full = signed_request(body)
    for cut in (1, 10, len(full) // 2, len(full) - len(body), len(full) - 1):
        statuses, _, closed = exchange(server, full[:cut], half_close=True)
        assert closed and statuses in ([], [400]), (cut, statuses)
    assert not a.seen and not logs.errors()
    assert good_answer(server)[0] == 200


def test_a_store_that_fails_is_a_generic_500(logs):
    class BrokenStore:
        def begin(self, id):
            raise RuntimeError("db password=hunter2 at /srv/secret/path.db")

        def commit(self, id):
            pass

        def abort(self, id):
            pass

    receiver = webhooklite.Receiver(SECRET, store=BrokenStore())
    receiver.on("*", lambda e: None)
    with receiver.start(**OPTIONS) as server:
        body = webhooklite.events.encode_event("x.y", {})
        statuses, raw, closed = exchange(server, signed_request(body), half_close=True)
    assert statuses == [500]
    text = raw.decode("latin-1")
    assert "hunter2" not in text and "/srv" not in text and "Traceback" not in text
    assert any("hunter2" in line and "Traceback" in line for line in logs.errors())  # the details: log only


def test_signature_errors_say_less_to_the_caller_than_to_the_log(app, logs):
    _, server = app
    body = b'{"event":"x"}'
    h = sign(b'{"event": "x"}')  # signed the re-serialized form: the log explains, the caller learns nothing
    statuses, raw, _ = exchange(server, head(body, h) + body, half_close=True)
    assert statuses == [401]
    assert answer_body(raw) == {"error": "signature does not match"}
    assert any("re-serialized" in t for t in logs.texts())


@pytest.mark.parametrize("scheme, secret", [("standard", SECRET), ("stripe", "whsec_test_secret")])
def test_a_replay_with_a_new_unsigned_id_header_is_still_a_duplicate(scheme, secret):
    receiver = webhooklite.Receiver(secret, scheme=scheme)
    runs = []
    receiver.on("*", lambda e: runs.append(e.id))
    body = json.dumps({"id": "evt_1", "type": "payment_intent.succeeded"}).encode()
    h = webhooklite.sign(body, secret, scheme=scheme, msg_id="msg_1")
    with receiver.start(**OPTIONS) as server:
        assert exchange(server, head(body, h) + body, half_close=True)[0] == [200]
        for extra in ({}, {"webhook-id": "msg_2"}, {"svix-id": "msg_3"}, {"X-GitHub-Delivery": "x"}):
            statuses, raw, _ = exchange(server, head(body, dict(h, **extra)) + body, half_close=True)
            # standard: the id is signed, so a changed one is 401; stripe: the body's id decides.
            assert statuses == [200] and answer_body(raw) == {"status": "duplicate"} or statuses == [401], (extra, raw)
    assert len(runs) == 1


def test_bad_signatures_cost_no_more_than_good_requests():
    """The "was it re-serialized?" guess runs at most once a second per receiver, not per request."""
    items = [{"id": i, "name": "Blue T-Shirt", "price": 25.0, "tags": ["a", "b"]} for i in range(3000)]
    body = json.dumps({"event": "x", "items": items}).encode()  # ~200 KB, spaced like json.dumps
    compact = json.dumps(json.loads(body), separators=(",", ":")).encode()
    signer = webhooklite.Signer(SECRET)
    headers = signer.sign(compact, "msg_1", int(time.time()))
    with pytest.raises(webhooklite.SignatureError, match="re-serialized"):
        signer.verify(body, headers)  # the first: diagnosed for the developer
    start = time.monotonic()
    for _ in range(30):  # a flood right after: refused at the price of one HMAC each
        with pytest.raises(webhooklite.SignatureError) as info:
            signer.verify(body, headers)
        assert "re-serialized" not in str(info.value)
    assert time.monotonic() - start < 0.5  # without the limit: about 40 ms each, 1.2 s in all


# -- random garbage and random mutations of a valid signed request -----------------------------


def garbage(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
    if kind == 1:  # plausible head, random lines
        lines = [rng.choice([b"POST / HTTP/1.1", b"GET / HTTP/1.0", b"POST /a?b HTTP/1.1", b"X Y Z"])]
        for _ in range(rng.randrange(0, 30)):
            n = rng.randrange(0, 200)
            lines.append(bytes(rng.choice(b"abc:;, \t\r-=0123456789\xff") for _ in range(n)))
        return b"\r\n".join(lines) + rng.choice([b"\r\n\r\n", b"\r\n", b""])
    if kind == 2:  # a long line without end
        return b"POST /" + b"x" * rng.randrange(8000, 9000)
    return b"\r\n" * rng.randrange(1, 50) + b"POST / HTTP/1.1\r\nContent-Length: " + str(rng.randrange(10**6)).encode() + b"\r\n\r\n{"


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(6)
        i = rng.randrange(len(b)) if b else 0
        if op == 0 and b:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        elif op == 2 and b:
            del b[i:i + rng.randrange(1, 16)]
        elif op == 3:
            b = b[:i]
        elif op == 4:
            b[i:i] = rng.choice([b"\r\n", b"\n", b":", b" ", b"\x00", b"\r\n\r\n", b"Transfer-Encoding: chunked\r\n"])
        else:
            j = rng.randrange(len(b)) if b else 0
            b[i:i] = b[j:j + rng.randrange(1, 64)]
    return bytes(b)


def test_random_garbage_and_mutations(app, logs):
    a, server = app
    rng = random.Random(20260414)
    originals: Dict[str, bytes] = {}
    answered: Dict[int, int] = {}
    for n in range(600):
        if n % 3 == 0:
            data = garbage(rng)
        else:
            msg_id = f"msg_mut{n}"
            body = webhooklite.events.encode_event("payment.completed", {"n": n, "item": "Blue T-Shirt"})
            originals[msg_id] = body
            data = mutate(rng, signed_request(body, msg_id))
        statuses, raw, _ = exchange(server, data, half_close=True, timeout=5)
        for status in statuses:
            answered[status] = answered.get(status, 0) + 1
        assert 500 not in statuses, (n, data[:200], raw[:300])
        assert b"Traceback" not in raw and KEY_TEXT.encode() not in raw
    # Nobody got in: every event a handler saw is byte for byte one that was signed.
    for event in a.seen:
        assert event.id in originals and event.body == originals[event.id], event
    assert set(answered) <= {200, 400, 401, 404, 405, 411, 413, 414, 431, 501, 505}, answered
    assert answered.get(400, 0) > 50 and answered.get(401, 0) > 50, answered
    assert not logs.errors(), logs.errors()[:3]
    assert good_answer(server)[0] == 200


# -- slow and idle clients ------------------------------------------------------------------------


class Slowloris:
    """``n`` clients that each send a request head one byte a second, reconnecting when cut off."""

    def __init__(self, server, n: int) -> None:
        self.addr = (server.host, server.port)
        self.n = n
        self.cut: List[float] = []  # seconds each connection lived before the server cut it
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.payload = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nX-Slow: " + b"a" * 1000

    def __enter__(self) -> "Slowloris":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _open(self, sel: selectors.BaseSelector) -> None:
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(self.addr)
        sel.register(s, selectors.EVENT_READ, [time.monotonic(), 0])

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for _ in range(self.n):
            self._open(sel)
        next_tick = time.monotonic()
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.05):
                    s = key.fileobj
                    try:
                        data = s.recv(4096)
                    except OSError:
                        data = b""
                    if not data:  # cut off: reconnect to keep up the pressure
                        self.cut.append(time.monotonic() - key.data[0])
                        sel.unregister(s)
                        s.close()
                        self._open(sel)
                if time.monotonic() >= next_tick:
                    next_tick += 1.0
                    for key in list(sel.get_map().values()):
                        state = key.data
                        try:
                            key.fileobj.send(self.payload[state[1]:state[1] + 1])
                            state[1] += 1
                            self.sent += 1
                        except OSError:
                            pass
        finally:
            for key in list(sel.get_map().values()):
                key.fileobj.close()
            sel.close()


def test_hostile_campaign_while_a_normal_client_is_served(logs):
    """Slowloris, garbage, huge heads and deep JSON at once; a normal client is answered within 2 s.

    Afterwards the server answers, its threads are back near idle and the process grew
    less than 64 MiB (RSS, /proc/self/statm).
    """
    a = App()
    rng = random.Random(7)
    baseline_threads = threading.active_count()
    baseline_rss = rss_bytes()
    stop = threading.Event()
    failures: List[str] = []

    def attacker(seed: int) -> None:
        r = random.Random(seed)
        blobs = [
            LIMIT_CASES["100 KB header line"][0],
            LIMIT_CASES["10,000 headers"][0],
            LIMIT_CASES["huge Content-Length, no body"][0],
            signed_request(b"[" * 100_000 + b"]" * 100_000),
            signed_request(b'{"bad": "\xff"}'),
        ]
        while not stop.is_set():
            data = r.choice(blobs) if r.random() < 0.5 else garbage(r)
            try:
                statuses, raw, _ = exchange(server, data, half_close=True, timeout=5)
            except OSError as e:
                failures.append(f"attacker could not connect: {e}")
                return
            if 500 in statuses:
                failures.append(f"500 for {data[:100]!r}")

    with a.receiver.start(**OPTIONS) as server:
        with Slowloris(server, 50) as loris:
            attackers = [threading.Thread(target=attacker, args=(i,), daemon=True) for i in range(3)]
            for t in attackers:
                t.start()
            latencies = []
            end = time.monotonic() + 2.5
            while time.monotonic() < end:
                status, seconds = good_answer(server, str(rng.random()))
                assert status == 200 and seconds < 2.0, (status, seconds)
                latencies.append(seconds)
                time.sleep(0.05)
            stop.set()
            for t in attackers:
                t.join(10)
        assert not failures, failures[:5]
        # Every slow connection was cut after about request_timeout (plus the watchdog's tick).
        assert len(loris.cut) >= 50, loris.cut
        assert max(loris.cut) < OPTIONS["request_timeout"] + OPTIONS["idle_timeout"] + 1.5, max(loris.cut)
        # After: a valid request is answered, the threads are back near idle, memory is bounded.
        assert good_answer(server)[0] == 200
        assert wait_for(lambda: threading.active_count() <= baseline_threads + 3, 5.0), threading.active_count()
        grown = rss_bytes() - baseline_rss
        print(f"campaign: {len(latencies)} normal requests, slowest {max(latencies):.3f} s; "
              f"{len(loris.cut)} slow connections cut after at most {max(loris.cut):.2f} s; "
              f"RSS grew {grown / 2**20:.1f} MiB")
        assert grown < 64 * 1024 * 1024, f"RSS grew {grown / 2**20:.1f} MiB"
    assert len(latencies) >= 10 and max(latencies) < 2.0
    assert {e.type for e in a.seen} == {"normal.ping"}
    assert not logs.errors(), logs.errors()[:3]


def test_idle_connections_are_closed_after_idle_timeout(app):
    _, server = app
    s = socket.create_connection((server.host, server.port), timeout=5)
    start = time.monotonic()
    assert s.recv(1) == b""  # closed by the server, with no answer (nothing was asked)
    assert 0.8 < time.monotonic() - start < OPTIONS["idle_timeout"] + 1.5
    s.close()
    # A kept-alive connection between requests: the same.
    s = socket.create_connection((server.host, server.port), timeout=5)
    body = webhooklite.events.encode_event("keep.alive", {})
    s.sendall(signed_request(body))
    assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
    start = time.monotonic()
    assert s.recv(1) == b""
    assert time.monotonic() - start < OPTIONS["idle_timeout"] + 1.5
    s.close()


def test_a_body_that_never_comes_is_cut_at_request_timeout(app):
    _, server = app
    s = socket.create_connection((server.host, server.port), timeout=10)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
    start = time.monotonic()
    for _ in range(5):  # keep trickling: the socket never goes idle, the deadline still holds
        time.sleep(0.3)
        try:
            s.sendall(b" ")
        except OSError:
            break
    s.settimeout(5)
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass
    assert time.monotonic() - start < OPTIONS["request_timeout"] + 1.5
    s.close()


def test_over_max_connections_sockets_wait_and_threads_stay_bounded(logs):
    """Thousands of idle sockets: at most max_connections threads; the process survives and serves."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = min(10_000, soft - 500)
    if n < 1000:
        pytest.skip(f"needs at least 1500 file descriptors, have {soft}")
    cap = 8
    receiver = webhooklite.Receiver(SECRET)
    baseline = threading.active_count()
    with receiver.start(max_connections=cap, backlog=64, **OPTIONS) as server:
        socks = []
        most = 0
        try:
            for i in range(n):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex((server.host, server.port))
                socks.append(s)
                if i % 500 == 0:
                    most = max(most, threading.active_count())
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                most = max(most, threading.active_count())
                time.sleep(0.02)
        finally:
            for s in socks:
                s.close()
        # The server's own threads: serve loop + watchdog + one per connection, at most `cap`.
        assert most <= baseline + 2 + cap, (most, baseline)
        assert wait_for(lambda: good_answer(server)[0] == 200, 10.0)
        assert wait_for(lambda: threading.active_count() <= baseline + 3, 10.0)
    assert not logs.errors()


def test_under_a_full_cap_idle_connections_make_room(logs):
    cap = 4
    receiver = webhooklite.Receiver(SECRET)
    with receiver.start(max_connections=cap, request_timeout=2.0, idle_timeout=10.0) as server:
        idle = [socket.create_connection((server.host, server.port), timeout=5) for _ in range(cap * 3)]
        try:
            time.sleep(0.2)
            status, seconds = good_answer(server)
            assert status == 200 and seconds < 3.0, (status, seconds)
        finally:
            for s in idle:
                s.close()
