"""The Sender against scripted loopback servers: wire format, retries, redirects, timeouts, reuse."""
import json
import threading
import time

import pytest

import webhooklite
from conftest import SECRET, LoopbackServer
from webhooklite import Retry, Sender

FAST = Retry(attempts=3, backoff=0.01, max_delay=0.05, jitter=0)
ORDER = {"order_id": "ABC123", "customer": "Jane D.", "item": "Blue T-Shirt", "amount": 25.00}


def test_wire_format(scripted):
    server = scripted([200])
    with Sender(server.url, SECRET) as sender:
        d = sender.send("payment.completed", dict(ORDER, time="2026-04-14T08:30:00Z"))
    assert d.ok and d.status == 200 and d.attempts == 1 and d.response_body == b'{"ok":true}'
    method, path, headers, body = server.requests[0]
    assert (method, path) == ("POST", "/hook")
    assert body == (
        b'{"event":"payment.completed","order_id":"ABC123","customer":"Jane D.",'
        b'"item":"Blue T-Shirt","amount":25.0,"time":"2026-04-14T08:30:00Z"}'
    )
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == f"webhooklite/{webhooklite.__version__}"
    assert headers["webhook-id"] == d.id and d.id.startswith("msg_")
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
    event = webhooklite.verify(body, headers, SECRET)
    assert event.id == d.id and event.timestamp.timestamp() == int(headers["webhook-timestamp"])


def test_time_is_added_in_rfc3339_utc(scripted):
    server = scripted([200])
    webhooklite.send(server.url, "payment.completed", ORDER, secret=SECRET)
    data = json.loads(server.requests[0][3])
    assert list(data)[0] == "event" and list(data)[-1] == "time"
    assert time.strptime(data["time"], "%Y-%m-%dT%H:%M:%SZ")


def test_event_field_in_data_is_refused(scripted):
    server = scripted([200])
    with pytest.raises(ValueError, match="'event'"):
        webhooklite.send(server.url, "x", {"event": "y"})
    assert server.requests == []


def test_post_sends_json_as_is(scripted):
    server = scripted([200])
    with Sender(server.url) as sender:
        assert sender.post({"text": "New order! ✓"}).ok
    _, _, headers, body = server.requests[0]
    assert body == '{"text":"New order! ✓"}'.encode()
    assert "webhook-signature" not in headers and headers["webhook-id"].startswith("msg_")


def test_retry_on_503_keeps_the_id_and_refreshes_the_timestamp(scripted, monkeypatch):
    server = scripted([503, 503, 200])
    clock = iter(range(1_700_000_000, 1_700_000_100, 7))
    monkeypatch.setattr(webhooklite.sender.time, "time", lambda: float(next(clock)))
    with Sender(server.url, SECRET, retry=FAST) as sender:
        d = sender.send("payment.completed", ORDER)
    assert d.ok and d.attempts == 3
    ids = {r[2]["webhook-id"] for r in server.requests}
    stamps = [r[2]["webhook-timestamp"] for r in server.requests]
    assert ids == {d.id}
    assert len(set(stamps)) == 3
    assert len({r[2]["webhook-signature"] for r in server.requests}) == 3
    assert len({r[3] for r in server.requests}) == 1  # the body does not change


def test_retry_on_connection_reset(scripted):
    server = scripted(["reset", 200])
    d = webhooklite.send(server.url, "payment.completed", ORDER, secret=SECRET, retry=FAST)
    assert d.ok and d.attempts == 2 and len(server.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_no_retry_on_other_4xx(scripted, status):
    server = scripted([status])
    d = webhooklite.send(server.url, "payment.completed", ORDER, retry=FAST)
    assert not d.ok and d.status == status and d.attempts == 1 and len(server.requests) == 1
    with pytest.raises(webhooklite.DeliveryError) as e:
        d.raise_for_status()
    assert e.value.status == status and e.value.attempts == 1


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504])
def test_retry_statuses(scripted, status):
    server = scripted([status, 200])
    d = webhooklite.send(server.url, "x", {}, retry=FAST)
    assert d.ok and d.attempts == 2


def test_gives_up_after_attempts(scripted):
    server = scripted([500])
    d = webhooklite.send(server.url, "x", {}, retry=FAST)
    assert not d.ok and d.status == 500 and d.attempts == 3 and len(server.requests) == 3
    assert "500" in d.error


def test_redirect_is_not_followed(scripted):
    server = scripted([(302, {"Location": "http://127.0.0.1:1/elsewhere"})])
    d = webhooklite.send(server.url, "x", {}, retry=FAST)
    assert not d.ok and d.status == 302 and d.attempts == 1
    assert "not followed" in d.error and "elsewhere" in d.error
    assert len(server.requests) == 1


def test_retry_after_is_honoured(scripted):
    server = scripted([(503, {"Retry-After": "1"}), 200])
    start = time.monotonic()
    d = webhooklite.send(server.url, "x", {}, retry=Retry(attempts=2, backoff=0.01, max_delay=5, jitter=0))
    assert d.ok and time.monotonic() - start >= 0.95


def test_retry_after_longer_than_max_delay_stops_and_reports_it(scripted):
    # Issue 10 item 12: a 429 asking for 120 s is never retried after max_delay: the Sender
    # stops and says so; the Outbox schedules the next attempt after Retry-After.
    server = scripted([(429, {"Retry-After": "120"}), 200])
    start = time.monotonic()
    d = webhooklite.send(server.url, "x", {}, retry=Retry(attempts=3, backoff=0.01, max_delay=0.2, jitter=0))
    assert time.monotonic() - start < 1
    assert not d.ok and d.status == 429 and d.attempts == 1 and len(server.requests) == 1
    assert d.retry_after == 120 and d.retryable
    assert "Retry-After asks for 120 s, more than max_delay (0.2 s)" in d.error


def test_a_shorter_retry_after_is_a_floor_for_the_wait(scripted):
    server = scripted([(503, {"Retry-After": "1"}), 200])
    seen = []
    with Sender(server.url, retry=Retry(attempts=2, backoff=0.01, max_delay=2, jitter=0.2)) as sender:
        d = sender.deliver(b"{}", on_retry=lambda failed, wait: seen.append(wait))
    assert d.ok and d.attempts == 2 and seen == [1.0]  # backoff would have waited about 0.01 s
    assert Retry(backoff=5, max_delay=30, jitter=0).delay(1, retry_after=2) == 5  # a floor, not a ceiling
    assert Retry(backoff=0.1, max_delay=1, jitter=0).delay(1, retry_after=7) == 7  # never sooner than asked


def test_retry_after_http_date():
    from email.utils import formatdate

    from webhooklite.sender import _parse_retry_after

    assert 8 <= _parse_retry_after(formatdate(time.time() + 10, usegmt=True)) <= 10
    assert _parse_retry_after("120") == 120
    assert _parse_retry_after("soon") is None


def test_backoff_schedule_and_jitter():
    r = Retry(attempts=6, backoff=0.5, max_delay=3.0, jitter=0)
    assert [r.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    j = Retry(backoff=1.0, jitter=0.2)
    delays = [j.delay(1) for _ in range(200)]
    assert 0.8 <= min(delays) < max(delays) <= 1.2


def test_timeout_is_respected(scripted):
    server = scripted([("sleep", 2)])
    start = time.monotonic()
    d = webhooklite.send(server.url, "x", {}, timeout=0.3, retry=Retry(attempts=1))
    assert not d.ok and d.status is None and "timed out" in d.error
    assert time.monotonic() - start < 1.5


def test_connection_refused_is_reported_not_raised():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    d = webhooklite.send(f"http://127.0.0.1:{port}/", "x", {}, retry=FAST)
    assert not d.ok and d.status is None and d.attempts == 3 and "refused" in d.error


def test_connection_is_reused_across_sends(scripted):
    server = scripted([200])
    with Sender(server.url, SECRET) as sender:
        for _ in range(20):
            assert sender.send("x", {}).ok
    assert len(server.requests) == 20 and server.connections == 1


def test_dead_pooled_connection_is_replaced_transparently(scripted):
    server = scripted(["close", 200])
    with Sender(server.url, retry=Retry(attempts=1)) as sender:
        assert sender.send("x", {}).ok
        time.sleep(0.05)  # the server has closed the kept-alive connection
        d = sender.send("x", {})
    assert d.ok and d.attempts == 1 and server.connections == 2


def test_thread_safe_sends_share_few_connections(scripted):
    server = scripted([200])
    results = []
    with Sender(server.url, SECRET) as sender:
        def work():
            for _ in range(25):
                results.append(sender.send("x", {}).ok)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert results == [True] * 100 and len(server.requests) == 100
    assert server.connections <= 4
    assert len({r[2]["webhook-id"] for r in server.requests}) == 100


def test_github_scheme_headers(scripted):
    server = scripted([200])
    with Sender(server.url, "It's a Secret to Everybody", scheme="github") as sender:
        d = sender.send("issues", {"action": "opened"})
    _, _, headers, body = server.requests[0]
    assert headers["x-github-event"] == "issues" and headers["x-github-delivery"] == d.id
    assert headers["webhook-id"] == d.id
    event = webhooklite.verify(body, headers, "It's a Secret to Everybody", scheme="github")
    assert event.type == "issues.opened" and event.id == d.id and event.timestamp is None


def test_stripe_scheme_headers(scripted):
    server = scripted([200])
    webhooklite.send(server.url, "payment_intent.succeeded", {}, secret="whsec_abc", scheme="stripe")
    _, _, headers, body = server.requests[0]
    assert headers["stripe-signature"].startswith("t=")
    assert webhooklite.verify(body, headers, "whsec_abc", scheme="stripe")


def test_custom_headers_and_header_injection(scripted):
    server = scripted([200])
    with Sender(server.url, headers={"X-Store": "blue-shirts"}) as sender:
        sender.send("x", {})
    assert server.requests[0][2]["x-store"] == "blue-shirts"
    with pytest.raises(ValueError):
        Sender(server.url, headers={"X-Evil": "a\r\nInjected: yes"})
    with pytest.raises(ValueError):
        webhooklite.send(server.url, "x\r\nInjected: yes", {})


def test_response_body_is_capped(scripted):
    # A receiver answering with a large body: the Delivery keeps 64 KiB of it.
    receiver = webhooklite.Receiver(None)
    big = b"x" * (200 * 1024)
    receiver.process = lambda h, body: webhooklite.Response(500, [], big)  # type: ignore[assignment]
    with receiver.start() as server:
        d = webhooklite.send(server.url, "x", {}, retry=Retry(attempts=1))
    assert d.status == 500 and len(d.response_body) == 64 * 1024


def test_bad_urls_are_refused():
    for url in ("ftp://example.com/", "http:///nohost", "not a url", "http://127.0.0.1:port/"):
        with pytest.raises(ValueError):
            Sender(url)


def test_secret_not_in_repr_or_logs(scripted, caplog):
    server = scripted([503])
    secret = "whsec_" + "QUJD" * 8
    with caplog.at_level("DEBUG", logger="webhooklite"):
        d = webhooklite.send(server.url + "/T0000/SECRETPATH", "x", {}, secret=secret, retry=FAST)
    assert not d.ok
    text = caplog.text + repr(d)
    assert "QUJD" not in text and "SECRETPATH" not in text
    assert "failed after 3 attempt(s)" in caplog.text


def test_retry_after_with_odd_bytes_does_not_escape(scripted):
    # http.client reads header bytes as latin-1: b"\xb2" is "²", which str.isdigit() accepts.
    server = scripted([(503, {"Retry-After": "\u00b2"}), 200])
    d = webhooklite.send(server.url, "x", {}, retry=FAST)
    assert d.ok and d.attempts == 2


def test_on_retry_sees_each_retried_attempt(scripted):
    server = scripted([503, 502, 200])
    seen = []
    with Sender(server.url, retry=FAST) as sender:
        d = sender.deliver(b"{}", on_retry=lambda failed, wait: seen.append((failed.attempts, failed.status, wait)))
    assert d.ok and [(a, s) for a, s, _ in seen] == [(1, 503), (2, 502)]
    assert all(0 <= w <= 0.05 for _, _, w in seen)


def test_message_id_with_crlf_is_refused(scripted):
    server = scripted([200])
    with Sender(server.url) as sender:
        with pytest.raises(ValueError, match="message id"):
            sender.post({}, id="msg_1\r\nX-Injected: 1")
    assert server.requests == []


# -- timeouts: a connect budget and a read budget (issue 10, item 10) --------------------------


class Blackholes:
    """Listening sockets on 127.0.0.2, .3, ... at one port, whose accept queues are full: they drop SYNs.

    Linux keeps backlog + 1 connections waiting to be accepted; past that a SYN is dropped and the
    client retransmits, as with a broken AAAA record or a firewall that drops.
    """

    def __init__(self, port, n=1):
        import socket

        self.socks, self.fillers, self.addresses = [], [], []
        for i in range(n):
            address = f"127.0.0.{2 + i}"
            s = socket.socket()
            s.bind((address, port))
            s.listen(0)
            self.socks.append(s)
            self.addresses.append(address)
            filler = socket.create_connection((address, port), timeout=2)  # fills the queue: never accepted
            self.fillers.append(filler)
            probe = socket.socket()
            probe.settimeout(0.3)
            try:
                probe.connect((address, port))
                pytest.skip("a listener with a full accept queue does not drop SYNs on this machine")
            except socket.timeout:
                pass
            finally:
                probe.close()

    def close(self):
        for s in self.socks + self.fillers:
            s.close()


@pytest.fixture
def blackholes():
    made = []

    def make(port, n=1):
        try:
            b = Blackholes(port, n)
        except OSError as e:
            pytest.skip(f"cannot listen on 127.0.0.2+ at port {port}: {e}")
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.mark.parametrize("guarded", [False, True])
def test_an_address_that_drops_syns_does_not_eat_the_budget(scripted, blackholes, guarded):
    server = scripted([200])
    holes = blackholes(server.port)
    resolver = lambda host, port: holes.addresses + ["127.0.0.1"]  # noqa: E731  (a broken first address)
    guard = {"block_private": True, "allow_networks": ["127.0.0.0/8"]} if guarded else {}
    start = time.monotonic()
    with Sender(f"http://hooks.example:{server.port}/hook", timeout=2.0, retry=Retry(attempts=1),
                resolver=resolver, **guard) as sender:
        d = sender.send("x", {})
    assert d.ok and d.attempts == 1, d.error
    assert time.monotonic() - start < 1.5  # the next address was tried 250 ms later, not after 2 s
    assert len(server.requests) == 1 and server.requests[0][2]["host"] == f"hooks.example:{server.port}"


def test_the_read_budget_starts_once_connected(scripted, blackholes):
    # Two dead addresses before the live one: about 0.5 s of the connect budget goes on them.
    # Then the receiver takes 0.8 s, inside a 1.2 s read budget: on one clock started before
    # connecting (1.2 s for everything), this answer would come too late.
    server = scripted([("sleep", 0.8)])
    holes = blackholes(server.port, n=2)
    with Sender(f"http://hooks.example:{server.port}/hook", timeout=webhooklite.Timeout(connect=3, read=1.2),
                retry=Retry(attempts=1), resolver=lambda h, p: holes.addresses + ["127.0.0.1"]) as sender:
        d = sender.send("x", {})
    assert d.ok, d.error
    assert 1.2 < d.elapsed < 2.5


def test_no_address_answers_within_the_connect_budget(scripted, blackholes):
    server = scripted([200])
    holes = blackholes(server.port, n=2)
    start = time.monotonic()
    d = webhooklite.send(f"http://hooks.example:{server.port}/", "x", {}, resolver=lambda h, p: holes.addresses,
                         timeout=webhooklite.Timeout(connect=0.6, read=5), retry=Retry(attempts=1))
    assert not d.ok and d.retryable and d.status is None
    assert d.error.startswith("connect timed out after 0.6 s") and "127.0.0.2" in d.error, d.error
    assert time.monotonic() - start < 1.5
    assert not server.requests


def test_a_refused_address_moves_on_at_once(scripted):
    import socket

    server = scripted([200])
    dead = socket.socket()
    dead.bind(("127.0.0.2", server.port))  # bound, not listening: connections are refused
    try:
        start = time.monotonic()
        d = webhooklite.send(f"http://hooks.example:{server.port}/", "x", {},
                             resolver=lambda h, p: ["127.0.0.2", "127.0.0.1"], retry=Retry(attempts=1))
        assert d.ok and time.monotonic() - start < 0.2, d.error
        d = webhooklite.send(f"http://hooks.example:{server.port}/", "x", {},
                             resolver=lambda h, p: ["127.0.0.2"], retry=Retry(attempts=1))
        assert not d.ok and d.error == "connection refused"
    finally:
        dead.close()


def test_timeout_as_a_number_or_a_timeout():
    assert Sender("http://127.0.0.1:9/", timeout=4).timeout == webhooklite.Timeout(connect=4, read=4)
    t = webhooklite.Timeout(connect=1.5, read=30)
    assert Sender("http://127.0.0.1:9/", timeout=t).timeout is t
    assert repr(t) == "Timeout(connect=1.5, read=30)"
    for bad in (0, -1, float("inf"), float("nan"), "10", None, True):
        with pytest.raises(ValueError, match="timeout"):
            Sender("http://127.0.0.1:9/", timeout=bad)
    with pytest.raises(ValueError, match="read timeout"):
        webhooklite.Timeout(connect=1, read=0)


# -- credentials in the URL (issue 10, item 11) --------------------------------------------------


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_shown(scripted, caplog):
    import base64

    server = scripted([200, 503])
    url = f"http://us%40er:p%3As%C3%A9cr3t@127.0.0.1:{server.port}/hook?x=1"
    with caplog.at_level("DEBUG", logger="webhooklite"):
        with Sender(url, SECRET, retry=FAST) as sender:
            ok = sender.send("x", {})
            failed = sender.send("x", {})
    assert ok.ok and not failed.ok
    expected = "Basic " + base64.b64encode("us@er:p:sécr3t".encode()).decode()
    assert {r[2]["authorization"] for r in server.requests} == {expected}
    assert server.requests[0][1] == "/hook?x=1"
    assert server.requests[0][2]["host"] == f"127.0.0.1:{server.port}"
    shown = ok.url + failed.url + sender.url + repr(sender) + repr(failed) + caplog.text
    assert ok.url == f"http://127.0.0.1:{server.port}/hook?x=1"
    assert "cr3t" not in shown and "us%40er" not in shown and "@127" not in shown
    assert "failed after 3 attempt(s)" in caplog.text


def test_credentials_and_an_authorization_header_are_refused_together():
    with pytest.raises(ValueError, match="credentials"):
        Sender("http://u:p@127.0.0.1:9/", headers={"Authorization": "Bearer x"})
    d = webhooklite.send("http://user@127.0.0.1:9/", "x", {}, retry=Retry(attempts=1))
    assert d.url == "http://127.0.0.1:9/" and not d.ok


# -- what the server says is escaped where Delivery.error is built (issue 11, item 3) -------------


class RawAnswer(LoopbackServer):
    """Answers every request with the same raw bytes, then closes."""

    def __init__(self, raw):
        self.raw = raw
        super().__init__()
        self.url = self.base + "/hook"

    def respond(self, conn, method, path, headers, body):
        conn.sendall(self.raw)
        return False


@pytest.mark.parametrize("raw, words", [
    (b"HTTP/1.1 503 Busy\x1b]0;owned\x07\x9b31m\r\nContent-Length: 0\r\n\r\n", "503 Busy\\x1b]0;owned\\x07\\x9b31m"),
    (b"HTTP/1.1 302 Found\r\nLocation: http://x/\x1b[2J\xc2\x85\r\nContent-Length: 0\r\n\r\n", "to http://x/\\x1b[2J"),
    (b"HTTP/1.1 2x0 \x1b[31mOK\r\n\r\n", "\\x1b[31mOK"),
])
def test_control_characters_from_the_server_are_escaped_in_the_error(raw, words, caplog):
    server = RawAnswer(raw)
    try:
        with caplog.at_level("WARNING", logger="webhooklite"):
            d = webhooklite.send(server.url, "x", {}, retry=Retry(attempts=1))
    finally:
        server.close()
    assert not d.ok
    assert d.error.isprintable() and words in d.error, d.error
    assert "\x1b" not in caplog.text and "\x9b" not in caplog.text and words in caplog.text


# -- relay(): one attempt with exactly the given headers ----------------------------------------


def test_relay_sends_exactly_the_given_headers_once(scripted):
    server = scripted([(503, {"Retry-After": "7", "X-App": "a"}), 200])
    body = b'{"already":"signed"}'
    given = {"Content-Type": "application/json", "webhook-id": "msg_relayed", "webhook-signature": "v1,abc",
             "X-Custom": "1", "Host": "original.example", "Content-Length": "999", "Connection": "close"}
    with Sender(server.url, SECRET, retry=FAST) as sender:  # a secret and retries, which relay() ignores
        d = sender.relay(body, given)
        assert not d.ok and d.status == 503 and d.attempts == 1 and d.retry_after == 7 and d.retryable
        assert d.id == "msg_relayed" and d.response_headers["x-app"] == "a"
        ok = sender.relay(body, {"Content-Type": "text/plain"})
    assert ok.ok and ok.id == "" and ok.response_headers["content-length"] == "11"
    assert len(server.requests) == 2 and server.connections == 1  # no retry; the same kept-alive connection
    method, path, headers, got = server.requests[0]
    assert (method, path, got) == ("POST", "/hook", body)
    assert headers == {"host": f"127.0.0.1:{server.port}", "content-type": "application/json",
                       "webhook-id": "msg_relayed", "webhook-signature": "v1,abc", "x-custom": "1",
                       "content-length": str(len(body))}


def test_relay_goes_through_the_guard_and_the_url_credentials(scripted):
    import base64

    server = scripted([200])
    d = Sender(server.url, block_private=True).relay(b"{}", {})
    assert not d.ok and "loopback" in d.error and not server.requests
    url = server.url.replace("http://", "http://u:p@")
    assert Sender(url).relay(b"{}", {}).ok
    assert server.requests[-1][2]["authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    assert Sender(url).relay(b"{}", {"Authorization": "Bearer t"}).ok
    assert server.requests[-1][2]["authorization"] == "Bearer t"
    with pytest.raises(ValueError):
        Sender(url).relay(b"{}", {"X-A": "1\r\nX-B: 2"})
    with pytest.raises(ValueError):
        Sender(url).relay(b"{}", {"X A": "1"})


def test_response_headers_are_kept_for_every_answer(scripted):
    server = scripted([(201, {"X-Request-Id": "r1"}), (404, {"X-Request-Id": "r2"})])
    with Sender(server.url, retry=FAST) as sender:
        assert sender.send("x", {}).response_headers["x-request-id"] == "r1"
        assert sender.send("x", {}).response_headers["x-request-id"] == "r2"
    assert webhooklite.send("http://127.0.0.1:9/", "x", {}, retry=Retry(attempts=1)).response_headers == {}


def test_import_webhooklite_stays_light():
    import subprocess
    import sys

    code = ("import sys, webhooklite; print(sorted(m for m in ('asyncio', 'ssl', 'socket', 'http.client', 'selectors', "
            "'webhooklite._connections', 'webhooklite._response', 'webhooklite.aio', 'webhooklite.guard') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
