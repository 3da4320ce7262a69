"""The AsyncSender against real loopback servers (issue 16, "Done when", sender side).

Every test runs its coroutine under a 15 s limit, so nothing can hang. The rules are the
Sender's own (``_wire``): where they matter, the same scripted answers are sent through both
and the Deliveries must agree.
"""
import asyncio
import json
import socket
import ssl
import time

import pytest

import webhooklite
from conftest import SECRET, LoopbackServer
from test_sender import Blackholes, RawAnswer
from test_ssrf import certs, servers, tls_server  # noqa: F401  (fixtures)
from webhooklite import AsyncSender, Retry, Timeout

FAST = Retry(attempts=3, backoff=0.01, max_delay=0.05, jitter=0)


def run(coro, limit=15):
    async def bounded():
        return await asyncio.wait_for(coro, limit)

    return asyncio.run(bounded())


def test_a_delivery_verified_by_the_official_standardwebhooks_library(scripted):
    standardwebhooks = pytest.importorskip("standardwebhooks", reason="pip install standardwebhooks to run this test")
    server = scripted([200])

    async def go():
        async with AsyncSender(server.url, SECRET) as sender:
            return await sender.send("payment.completed", {"order_id": "ABC123", "amount": 25.0})

    d = run(go())
    assert d.ok and d.status == 200 and d.attempts == 1 and d.response_body == b'{"ok":true}'
    method, path, headers, body = server.requests[0]
    assert (method, path) == ("POST", "/hook")
    payload = standardwebhooks.Webhook(SECRET).verify(body, headers)  # raises if the signature is wrong
    assert payload["event"] == "payment.completed" and payload["order_id"] == "ABC123"
    assert headers["webhook-id"] == d.id and headers["user-agent"] == f"webhooklite/{webhooklite.__version__}"


def test_asend_one_shot_and_post(scripted):
    server = scripted([200])

    async def go():
        d = await webhooklite.asend(server.url, "x.y", {"a": 1}, secret=SECRET)
        async with AsyncSender(server.url) as sender:
            p = await sender.post({"text": "New order! ✓"})
        return d, p

    d, p = run(go())
    assert d.ok and p.ok
    assert webhooklite.verify(server.requests[0][3], server.requests[0][2], SECRET)
    assert server.requests[1][3] == '{"text":"New order! ✓"}'.encode() and "webhook-signature" not in server.requests[1][2]


def test_fifty_sequential_sends_share_one_connection(scripted):
    server = scripted([200])

    async def go():
        async with AsyncSender(server.url, SECRET) as sender:
            return [await sender.send("x", {"n": n}) for n in range(50)]

    ds = run(go())
    assert all(d.ok for d in ds) and len(server.requests) == 50
    assert server.connections == 1
    assert len({r[2]["webhook-id"] for r in server.requests}) == 50


def test_a_retry_after_503_keeps_the_webhook_id(scripted):
    server = scripted([503, (503, {"Retry-After": "0"}), 200])

    async def go():
        async with AsyncSender(server.url, SECRET, retry=FAST) as sender:
            return await sender.send("payment.completed", {})

    d = run(go())
    assert d.ok and d.attempts == 3 and len(server.requests) == 3
    assert {r[2]["webhook-id"] for r in server.requests} == {d.id}
    for _, _, headers, body in server.requests:
        assert webhooklite.verify(body, headers, SECRET)


def test_two_hundred_gathered_sends_are_all_delivered(scripted):
    server = scripted([200])

    async def go():
        async with AsyncSender(server.url, SECRET, max_connections=16) as sender:
            return await asyncio.gather(*[sender.send("x", {"n": n}) for n in range(200)])

    ds = run(go())
    assert [d.ok for d in ds] == [True] * 200
    assert len(server.requests) == 200 and len({r[2]["webhook-id"] for r in server.requests}) == 200
    assert sorted(json.loads(r[3])["n"] for r in server.requests) == list(range(200))
    assert server.connections <= 16


class Silent(LoopbackServer):
    """Reads each request and never answers."""

    def respond(self, conn, method, path, headers, body):
        time.sleep(3)
        return False


def test_a_receiver_that_never_answers_fails_within_the_timeout():
    server = Silent()
    try:
        async def go():
            async with AsyncSender(server.base + "/", timeout=0.5, retry=Retry(attempts=1)) as sender:
                return await sender.send("x", {})

        start = time.monotonic()
        d = run(go())
        elapsed = time.monotonic() - start
    finally:
        server.close()
    assert not d.ok and d.status is None and d.retryable
    assert d.error == "timed out after 0.5 s waiting for the answer"
    assert 0.45 < elapsed < 1.5


def test_no_redirect_is_followed(scripted):
    target = scripted([200])
    server = scripted([(302, {"Location": target.url})])

    async def go():
        async with AsyncSender(server.url, retry=FAST) as sender:
            return await sender.send("x", {})

    d = run(go())
    assert not d.ok and d.status == 302 and d.attempts == 1 and not d.retryable
    assert "not followed" in d.error and target.url in d.error
    assert not target.requests


@pytest.mark.parametrize("script", [
    [200], [503], [(503, {"Retry-After": "120"})], [(429, {"Retry-After": "0"}), 201], [410], [404],
    [(301, {"Location": "/moved"})], ["reset", 200], ["close", 200],
])
def test_the_same_answers_make_the_same_delivery_as_the_sender(scripted, script):
    # One copy of the rules: the thread Sender and the AsyncSender judge alike.
    a, b = scripted(list(script)), scripted(list(script))
    retry = Retry(attempts=3, backoff=0.01, max_delay=1, jitter=0)
    sync = webhooklite.send(a.url, "x", {}, retry=retry)

    async def go():
        async with AsyncSender(b.url, retry=retry) as sender:
            return await sender.send("x", {})

    d = run(go())
    keys = ("ok", "status", "attempts", "error", "retry_after", "retryable", "response_body")
    assert {k: getattr(d, k) for k in keys} == {k: getattr(sync, k) for k in keys}
    assert len(a.requests) == len(b.requests)


def test_a_server_closed_kept_alive_connection_is_replaced(scripted):
    server = scripted(["close", 200])

    async def go():
        async with AsyncSender(server.url, retry=Retry(attempts=1)) as sender:
            first = await sender.send("x", {})
            await asyncio.sleep(0.05)  # the server has closed the connection; the protocol saw it
            return first, await sender.send("x", {})

    first, second = run(go())
    assert first.ok and second.ok and second.attempts == 1 and server.connections == 2


def test_control_characters_in_the_answer_are_escaped():
    server = RawAnswer(b"HTTP/1.1 503 Busy\x1b]0;owned\x07\r\nContent-Length: 0\r\n\r\n")
    try:
        d = run(webhooklite.asend(server.url, "x", {}, retry=Retry(attempts=1)))
    finally:
        server.close()
    assert d.error == "503 Busy\\x1b]0;owned\\x07"


def test_a_chunked_answer_and_the_body_cap(servers):  # noqa: F811
    def chunked(server, conn):
        while server.read_request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")

    def huge(server, conn):
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 10000000\r\n\r\n")
        try:
            for _ in range(150):
                conn.sendall(b"x" * 65536)
        except OSError:
            pass

    small, big = servers(chunked), servers(huge)

    async def go():
        async with AsyncSender(f"http://127.0.0.1:{small.port}/") as a:
            d1 = [await a.send("x", {}) for _ in range(3)]
        d2 = await webhooklite.asend(f"http://127.0.0.1:{big.port}/", "x", {}, retry=Retry(attempts=1))
        return d1, d2

    d1, d2 = run(go())
    assert all(d.ok and d.response_body == b"abc" for d in d1) and len(small.requests) == 3
    assert d2.status == 500 and len(d2.response_body) == 64 * 1024


def test_a_response_that_trickles_hits_the_read_budget(servers):  # noqa: F811
    def trickle(server, conn):
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(100):
            conn.sendall(b"x")
            time.sleep(0.1)

    server = servers(trickle)
    start = time.monotonic()
    d = run(webhooklite.asend(f"http://127.0.0.1:{server.port}/", "x", {}, timeout=0.8, retry=Retry(attempts=1)))
    assert not d.ok and "timed out after 0.8 s" in d.error and time.monotonic() - start < 1.6


def test_an_address_that_drops_syns_does_not_eat_the_connect_budget(scripted):
    server = scripted([200])
    try:
        holes = Blackholes(server.port)
    except OSError as e:
        pytest.skip(f"cannot listen on 127.0.0.2 at port {server.port}: {e}")
    try:
        async def go():
            async with AsyncSender(f"http://hooks.example:{server.port}/hook", timeout=Timeout(connect=2, read=2),
                                   retry=Retry(attempts=1), resolver=lambda h, p: holes.addresses + ["127.0.0.1"]) as s:
                ok = await s.send("x", {})
            async with AsyncSender(f"http://hooks.example:{server.port}/hook", timeout=Timeout(connect=0.5, read=2),
                                   retry=Retry(attempts=1), resolver=lambda h, p: holes.addresses) as s:
                return ok, await s.send("x", {})

        start = time.monotonic()
        ok, dead = run(go())
    finally:
        holes.close()
    assert ok.ok and ok.elapsed < 1.5, ok.error
    assert not dead.ok and dead.error.startswith("connect timed out after 0.5 s") and "127.0.0.2" in dead.error
    assert time.monotonic() - start < 3


def test_a_retry_after_longer_than_max_delay_ends_the_retries(scripted):
    server = scripted([(429, {"Retry-After": "60"}), 200])
    d = run(webhooklite.asend(server.url, "x", {}, retry=FAST))
    assert not d.ok and d.attempts == 1 and d.retry_after == 60 and "max_delay" in d.error


def test_the_ssrf_guard(scripted):
    server = scripted([200])

    async def go():
        url = f"http://localhost:{server.port}/hook"
        refused = await webhooklite.asend(url, "x", {}, block_private=True, retry=FAST)
        metadata = await webhooklite.asend("http://169.254.169.254/latest/", "x", {}, block_private=True)
        allowed = await webhooklite.asend(url, "x", {}, block_private=True, allow_networks=["127.0.0.0/8", "::1/128"])
        return refused, metadata, allowed

    refused, metadata, allowed = run(go())
    assert not refused.ok and refused.attempts == 1 and not refused.retryable and "loopback" in refused.error
    assert "cloud metadata" in metadata.error
    assert allowed.ok and len(server.requests) == 1


def test_tls_with_a_custom_ca(servers, certs):  # noqa: F811
    server = tls_server(servers, certs)
    url = f"https://localhost:{server.port}/"

    async def go():
        ctx = ssl.create_default_context(cafile=str(certs / "server.pem"))
        async with AsyncSender(url, SECRET, ssl_context=ctx) as sender:
            ok = [await sender.send("x", {}) for _ in range(3)]
        untrusted = await webhooklite.asend(url, "x", {}, retry=Retry(attempts=3))
        return ok, untrusted

    ok, untrusted = run(go())
    assert all(d.ok for d in ok), ok[0].error
    assert len(server.requests) == 3
    assert server.server_names == ["localhost", "localhost"]  # SNI; one kept-alive connection for the three
    assert not untrusted.ok and untrusted.attempts == 1 and "certificate" in untrusted.error


def test_relay_and_response_headers(scripted):
    server = scripted([(202, {"X-App": "1"})])

    async def go():
        async with AsyncSender(server.url, SECRET) as sender:
            return await sender.relay(b'{"a":1}', {"webhook-id": "msg_x", "Content-Type": "application/json"})

    d = run(go())
    assert d.ok and d.id == "msg_x" and d.response_headers["x-app"] == "1"
    assert set(server.requests[0][2]) == {"host", "webhook-id", "content-type", "content-length"}


def test_a_cancelled_send_leaves_the_sender_usable():
    server = Silent()
    try:
        async def go():
            async with AsyncSender(server.base + "/", timeout=5, retry=Retry(attempts=1), max_connections=1) as sender:
                task = asyncio.ensure_future(sender.send("x", {}))
                await asyncio.sleep(0.2)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                # The one connection slot was given back: the next send gets a new connection.
                return await asyncio.wait_for(sender.send("x", {}), 0.3 + 5)

        with pytest.raises(asyncio.TimeoutError):
            run(go(), limit=1.0)  # the second send is waiting on the silent server, not on a lost slot
    finally:
        server.close()
    assert server.connections == 2


def test_a_waiting_send_cancelled_as_a_connection_frees_up_passes_it_to_the_next():
    async def slow_sink(reader, writer):  # answers each request 0.2 s after reading it
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
                await reader.readexactly(int(length[0]))
                await asyncio.sleep(0.2)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def go():
        server = await asyncio.start_server(slow_sink, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sender = AsyncSender(f"http://127.0.0.1:{port}/", SECRET, max_connections=1,
                             timeout=Timeout(connect=3, read=5), retry=Retry(attempts=1))
        try:
            waiting = []

            async def first():
                d = await sender.send("a.b", {})  # holds the one connection for 0.2 s
                waiting[0].cancel()  # its caller gives up on the next send as the connection comes back
                return d

            a = asyncio.ensure_future(first())
            await asyncio.sleep(0.05)
            waiting.append(asyncio.ensure_future(sender.send("a.b", {})))  # waits for the connection
            await asyncio.sleep(0.01)
            start = time.monotonic()
            c = await sender.send("a.b", {})  # waits behind it: it must get the connection, not time out
            took = time.monotonic() - start
            assert (await a).ok
            with pytest.raises(asyncio.CancelledError):
                await waiting[0]
            return c, took
        finally:
            await sender.close()
            server.close()

    c, took = run(go())
    assert c.ok and c.status == 200, c.error
    assert took < 2.0  # the connect budget is 3 s: it did not wait that out


def test_sender_arguments_are_checked():
    with pytest.raises(ValueError):
        AsyncSender("ftp://example.com/")
    with pytest.raises(ValueError):
        AsyncSender("http://127.0.0.1:9/", headers={"X-A": "1\r\nX-B: 2"})
    with pytest.raises(ValueError):
        AsyncSender("http://127.0.0.1:9/", max_connections=0)
    with pytest.raises(ValueError):
        AsyncSender("http://127.0.0.1:9/", allow_networks=["10.0.0.0/8"])
    assert "whsec" not in repr(AsyncSender("http://u:p@127.0.0.1:9/secret-path", SECRET))
    assert AsyncSender("http://u:p@127.0.0.1:9/x").url == "http://127.0.0.1:9/x"


def test_connection_refused_is_reported():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    d = run(webhooklite.asend(f"http://127.0.0.1:{port}/", "x", {}, retry=FAST))
    assert not d.ok and d.attempts == 3 and d.error == "connection refused"
