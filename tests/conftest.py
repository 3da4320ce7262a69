"""Shared fixtures: secrets, signed requests, and the transports a Receiver runs on."""
import contextlib
import os
import http.client
import json
import socket
import struct
import threading
import time
from typing import Callable, Dict, Iterator, Optional, Tuple

import pytest

import transports
import webhooklite
from webhooklite.signing import new_message_id

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

#: (status, headers as a lower-case dict, body) of one answer.
Answer = Tuple[int, Dict[str, str], bytes]
#: call(method, path, headers, body) -> Answer
Call = Callable[[str, str, Dict[str, str], bytes], Answer]


def signed(
    event: str = "payment.completed",
    data: Optional[dict] = None,
    *,
    secret=SECRET,
    msg_id: Optional[str] = None,
    timestamp: Optional[int] = None,
    body: Optional[bytes] = None,
) -> Tuple[Dict[str, str], bytes]:
    """Headers and body of a request signed the way a Sender signs it."""
    if body is None:
        body = webhooklite.events.encode_event(event, data or {"item": "Blue T-Shirt"})
    msg_id = msg_id or new_message_id()
    headers = {"Content-Type": "application/json"}
    headers.update(webhooklite.sign(body, secret, msg_id=msg_id, timestamp=timestamp))
    return headers, body


@contextlib.contextmanager
def socket_transport(receiver: webhooklite.Receiver) -> Iterator[Call]:
    """The Receiver on its own HTTP server, over a real loopback socket."""
    with receiver.start(port=0) as server:
        def call(method: str, path: str, headers: Dict[str, str], body: bytes) -> Answer:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
            finally:
                conn.close()

        yield call


#: Every transport a Receiver can run on; the status table is driven against each.
TRANSPORTS: Dict[str, Callable[[webhooklite.Receiver], "contextlib.AbstractContextManager[Call]"]] = {
    "socket": socket_transport,
    "wsgi": transports.wsgi_transport,  # wsgiref + wsgiref.validate, real socket
    "asgi": transports.asgi_transport,  # receiver.asgi, called as an ASGI server would
}


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request):
    """A factory: ``with transport(receiver) as call: call(method, path, headers, body)``."""
    return TRANSPORTS[request.param]


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def body_json(answer: Answer) -> dict:
    return json.loads(answer[2])


class LoopbackServer:
    """A loopback HTTP/1.1 test server; subclasses say how to answer in :meth:`respond`.

    It records every request (``.requests``: method, path, lower-case headers,
    body) and counts the TCP connections it accepted (``.connections``).
    """

    def __init__(self):
        self.requests = []
        self.connections = 0
        self._lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        #: The server's origin, e.g. "http://127.0.0.1:40123".
        self.base = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def respond(self, conn, method, path, headers, body):
        """Answer one request on ``conn``; return whether to keep the connection."""
        raise NotImplementedError

    def answer(self, conn, status, payload=b'{"ok":true}', headers=None, close=False):
        head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(payload)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        if close:
            head += "Connection: close\r\n"
        conn.sendall(head.encode("latin-1") + b"\r\n" + payload)
        return not close

    @staticmethod
    def reset(conn):
        """Close abruptly (TCP RST)."""
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(5)
        f = conn.makefile("rb")
        try:
            while not self._stop.is_set():
                line = f.readline()
                if not line:
                    return
                method, path, _ = line.decode().split(" ", 2)
                headers = {}
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b""):
                        break
                    k, v = h.decode().split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                body = f.read(int(headers.get("content-length", 0)))
                with self._lock:
                    self.requests.append((method, path, headers, body))
                if not self.respond(conn, method, path, headers, body):
                    return
        except (OSError, ValueError):
            return
        finally:
            f.close()
            conn.close()

    def close(self):
        self._stop.set()
        self.sock.close()
        self._thread.join(2)


class ScriptedServer(LoopbackServer):
    """Answers each request as its script says (used in order; the last entry repeats).

    ``200`` / ``(503, {"Retry-After": "1"})`` / ``(302, {"Location": "/x"})``: answer that;
    ``"reset"``: close the connection abruptly; ``("sleep", s)``: wait s seconds, then 200;
    ``"close"``: answer 200 with ``Connection: close``.
    """

    def __init__(self, script):
        self.script = list(script)
        super().__init__()
        self.url = self.base + "/hook"

    def respond(self, conn, method, path, headers, body):
        with self._lock:
            action = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if action == "reset":
            return self.reset(conn)
        if action == "close":
            return self.answer(conn, 200, close=True)
        if isinstance(action, tuple) and action[0] == "sleep":
            time.sleep(action[1])
            return self.answer(conn, 200)
        status, extra = action if isinstance(action, tuple) else (action, {})
        return self.answer(conn, status, headers=extra)


@pytest.fixture
def scripted():
    """``scripted(script) -> ScriptedServer``; closed after the test."""
    servers = []

    def make(script):
        server = ScriptedServer(script)
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.close()


# -- under .ci/run nothing may skip -------------------------------------------------------------
#: .ci/run sets WEBHOOKLITE_CI=1 after installing every service and test-only package: there, a
#: test that would skip (no PostgreSQL, no Chromium, no uvicorn...) fails instead, with its reason.
CI = os.environ.get("WEBHOOKLITE_CI") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under WEBHOOKLITE_CI=1, where nothing may skip: {reason}"
