"""The HTTP/1.1 server under a Receiver, spoken to with raw sockets the way clients really behave."""
import http.client
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import webhooklite
from conftest import SECRET, signed, wait_for

ROOT = Path(__file__).resolve().parent.parent


def raw_request(headers, body, path="/", method="POST", extra=""):
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + extra + "\r\n").encode() + body


def read_response(sock):
    """One response from ``sock``: (status, headers, body)."""
    f = sock.makefile("rb")
    status = int(f.readline().split()[1])
    headers = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        k, v = line.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    body = f.read(int(headers.get("content-length", 0)))
    return status, headers, body


@pytest.fixture
def served():
    """A receiver counting handled ids, on a real server; yields (receiver, server, runs)."""
    runs = []
    receiver = webhooklite.Receiver(SECRET)
    receiver.on("payment.*", lambda e: runs.append(e.id))
    with receiver.start(port=0, idle_timeout=1.0, request_timeout=2.0) as server:
        yield receiver, server, runs


def connect(server):
    return socket.create_connection((server.host, server.port), timeout=5)


def with_length(headers, body):
    return dict(headers, **{"Content-Length": str(len(body))})


def test_url_and_default_host():
    receiver = webhooklite.Receiver(SECRET, path="/hooks")
    with receiver.start() as server:
        assert server.host == "127.0.0.1"
        assert server.url == f"http://127.0.0.1:{server.port}/hooks"


def test_keep_alive_serves_many_requests_on_one_connection(served):
    _, server, runs = served
    with connect(server) as s:
        for i in range(20):
            headers, body = signed(msg_id=f"msg_ka{i}")
            s.sendall(raw_request(with_length(headers, body), body))
            status, h, _ = read_response(s)
            assert status == 200 and h.get("connection") != "close"
    assert runs == [f"msg_ka{i}" for i in range(20)]


def test_pipelined_requests_are_answered_in_order(served):
    _, server, runs = served
    reqs = [signed(msg_id=f"msg_p{i}") for i in range(3)]
    with connect(server) as s:
        s.sendall(b"".join(raw_request(with_length(h, b), b) for h, b in reqs))
        f = s.makefile("rb")
        statuses = []
        for _ in range(3):
            line = f.readline()
            statuses.append(int(line.split()[1]))
            length = 0
            while True:
                h = f.readline()
                if h == b"\r\n":
                    break
                if h.lower().startswith(b"content-length"):
                    length = int(h.split(b":")[1])
            f.read(length)
    assert statuses == [200, 200, 200] and runs == ["msg_p0", "msg_p1", "msg_p2"]


def test_chunked_body_is_accepted(served):
    _, server, runs = served
    headers, body = signed(msg_id="msg_chunked")
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 10]), body[i:i + 10]) for i in range(0, len(body), 10))
    with connect(server) as s:
        s.sendall(raw_request(dict(headers, **{"Transfer-Encoding": "chunked"}), chunks + b"0\r\n\r\n"))
        assert read_response(s)[0] == 200
    assert runs == ["msg_chunked"]


def test_413_is_answered_without_reading_the_body(served):
    _, server, _ = served
    headers, _ = signed()
    with connect(server) as s:
        # Announce 50 MB and send none of it: the answer comes anyway, and the connection closes.
        s.sendall(raw_request(dict(headers, **{"Content-Length": str(50_000_000)}), b""))
        start = time.monotonic()
        status, h, body = read_response(s)
        assert status == 413 and h.get("connection") == "close" and b"limit" in body
        assert time.monotonic() - start < 1
        assert s.recv(1) == b""


def test_expect_100_continue(served):
    _, server, runs = served
    headers, body = signed(msg_id="msg_expect")
    with connect(server) as s:
        s.sendall(raw_request(dict(with_length(headers, body), Expect="100-continue"), b""))
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(body)
        assert read_response(s)[0] == 200
    assert runs == ["msg_expect"]


def test_http10_closes_after_the_answer(served):
    _, server, _ = served
    headers, body = signed()
    with connect(server) as s:
        s.sendall(raw_request(with_length(headers, body), body).replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        status, h, _ = read_response(s)
        assert status == 200 and h.get("connection") == "close"
        assert s.recv(1) == b""


def test_idle_connection_is_closed(served):
    _, server, _ = served
    with connect(server) as s:
        start = time.monotonic()
        assert s.recv(1) == b""  # idle_timeout=1.0: the server hangs up
        assert 0.5 < time.monotonic() - start < 4


def test_slow_client_is_cut_off_and_others_are_served(served):
    _, server, runs = served
    with connect(server) as slow:
        start = time.monotonic()
        slow.sendall(b"POST / HTTP/1.1\r\n")
        # Meanwhile a normal client is served at once.
        d = webhooklite.send(server.url, "payment.completed", {}, secret=SECRET)
        assert d.ok and d.elapsed < 1
        try:
            while time.monotonic() - start < 6:  # trickle a header byte at a time
                slow.sendall(b"X")
                time.sleep(0.2)
            pytest.fail("the slow client was never cut off")
        except OSError:
            pass
        assert time.monotonic() - start < 5


def test_busy_id_gets_409_and_then_succeeds():
    release = threading.Event()
    runs = []
    receiver = webhooklite.Receiver(SECRET)

    @receiver.on("payment.completed")
    def slow(event):
        runs.append(event.id)
        release.wait(5)

    with receiver.start() as server:
        headers, body = signed(msg_id="msg_busy")

        def post():
            c = http.client.HTTPConnection(server.host, server.port, timeout=5)
            c.request("POST", "/", body, headers)
            return c.getresponse().status

        result = {}
        t = threading.Thread(target=lambda: result.update(status=post()))
        t.start()
        assert wait_for(lambda: runs == ["msg_busy"])
        headers2, body2 = signed(msg_id="msg_busy")
        c = http.client.HTTPConnection(server.host, server.port, timeout=5)
        c.request("POST", "/", body2, headers2)
        r = c.getresponse()
        assert r.status == 409 and r.getheader("Retry-After") == "1" and b"retry later" in r.read()
        release.set()
        t.join(5)
        assert result["status"] == 200
        c.request("POST", "/", *reversed(signed(msg_id="msg_busy")))
        r2 = c.getresponse()
        assert r2.status == 200 and b"duplicate" in r2.read()
    assert runs == ["msg_busy"]


def test_many_concurrent_clients(served):
    _, server, runs = served
    ok = []

    def client(i):
        with webhooklite.Sender(server.url, SECRET) as s:
            ok.append(s.send("payment.completed", {"n": i}).ok)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(150)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert ok.count(True) == 150 and len(runs) == 150


def test_listen_backlog_is_at_least_128():
    receiver = webhooklite.Receiver(SECRET)
    server = webhooklite.server.WebhookServer(receiver, port=0)  # bound and listening, not yet accepting
    try:
        socks = []
        for _ in range(129):  # the kernel completes handshakes up to the backlog (+1)
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((server.host, server.port))
            socks.append(s)
        time.sleep(0.2)
        import select

        _, writable, _ = select.select([], socks, [], 1)
        assert len(writable) >= 129
    finally:
        for s in socks:
            s.close()
        server.stop()


def test_access_log_and_handler_traceback_go_through_logging(caplog):
    receiver = webhooklite.Receiver(SECRET)

    @receiver.on("boom")
    def boom(event):
        raise ValueError("kaboom")

    with caplog.at_level(logging.INFO, logger="webhooklite"):
        with receiver.start() as server:
            d = webhooklite.send(server.url, "boom", {}, secret=SECRET, retry=webhooklite.Retry(attempts=1))
    assert d.status == 500
    access = [r for r in caplog.records if r.name == "webhooklite.access"]
    assert access and '"POST /"' in access[0].getMessage() and " 500 " in access[0].getMessage()
    failed = [r for r in caplog.records if r.exc_info and "boom" in r.getMessage()]
    assert failed and "kaboom" in caplog.text


def test_unsigned_receiver_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="webhooklite"):
        webhooklite.Receiver(None)
    assert "unsigned" in caplog.text


SERVE_SCRIPT = """
import sys, logging
import webhooklite
logging.basicConfig(level=logging.INFO)
receiver = webhooklite.Receiver(None)
receiver.on("*", lambda e: print("got", e.type, flush=True))
server_port = int(sys.argv[1])
receiver.serve(port=server_port)
print("serve returned", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_signals(sig, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT, str(port)],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        assert wait_for(lambda: webhooklite.send(url, "ping", {}, retry=webhooklite.Retry(attempts=1), timeout=1).ok, 10)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "got ping" in out and "serve returned" in out
    assert "Traceback" not in err


def test_a_sender_retries_409_until_the_first_copy_is_done():
    release = threading.Event()
    runs = []
    receiver = webhooklite.Receiver(SECRET)

    @receiver.on("payment.completed")
    def slow(event):
        runs.append(event.id)
        release.wait(5)

    with receiver.start() as server:
        results = {}

        def send(name):
            with webhooklite.Sender(server.url, SECRET, retry=webhooklite.Retry(attempts=10, backoff=0.05, max_delay=2)) as s:
                results[name] = s.send("payment.completed", {}, id="msg_twice")

        first = threading.Thread(target=send, args=("first",))
        first.start()
        assert wait_for(lambda: runs == ["msg_twice"])
        second = threading.Thread(target=send, args=("second",))
        second.start()
        time.sleep(0.3)
        release.set()
        first.join(5)
        second.join(5)
    assert results["first"].ok and results["second"].ok
    assert results["second"].attempts > 1 and results["second"].response_body == b'{"status":"duplicate"}'
    assert runs == ["msg_twice"]


def test_a_handler_that_calls_sys_exit_leaves_its_event_to_the_retry_not_marked_done(caplog):
    receiver = webhooklite.Receiver(SECRET)
    runs = []

    @receiver.on("payment.completed")
    def exits_once(event):
        runs.append(event.id)
        if len(runs) == 1:
            sys.exit("the handler gave up")  # not handled: it must not count as done

    headers, body = signed(msg_id="msg_sys_exit")
    with receiver.start() as server, caplog.at_level(logging.ERROR, logger="webhooklite"):
        first = http.client.HTTPConnection(server.host, server.port, timeout=5)
        first.request("POST", "/", body=body, headers=headers)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            first.getresponse()  # no answer: the connection closes
        first.close()
        again = http.client.HTTPConnection(server.host, server.port, timeout=5)
        again.request("POST", "/", body=body, headers=headers)
        answer = again.getresponse()
        assert (answer.status, answer.read()) == (200, b'{"status":"ok"}')  # handled now, not "duplicate"
        again.close()
    assert runs == ["msg_sys_exit", "msg_sys_exit"]
    assert "SystemExit" in caplog.text  # said in the log, not a silent end of the connection's thread
    # Called directly (as a WSGI server's thread calls it), SystemExit goes on up, and the id is free again.
    direct = webhooklite.Receiver(SECRET)
    direct.on("payment.completed", exits_once)
    runs.clear()
    headers, body = signed(msg_id="msg_sys_exit_direct")
    with pytest.raises(SystemExit):
        direct.handle("POST", "/", headers, body)
    assert direct.handle("POST", "/", headers, body).status == 200 and len(runs) == 2
