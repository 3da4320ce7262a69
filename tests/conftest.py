"""Shared fixtures: secrets, signed requests, and the transports a Receiver runs on."""
import contextlib
import http.client
import json
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


class ScriptedServer:
    """A loopback HTTP/1.1 server that answers each request as its script says.

    Script entries (used in order; the last one repeats):
    ``200`` / ``(503, {"Retry-After": "1"})`` / ``(302, {"Location": "/x"})``: answer that;
    ``"reset"``: close the connection abruptly; ``("sleep", s)``: wait s seconds, then 200;
    ``"close"``: answer 200 with ``Connection: close``.
    It records every request (``.requests``: method, path, lower-case headers, body)
    and counts the TCP connections it accepted (``.connections``).
    """

    def __init__(self, script):
        import socket
        import threading

        self.script = list(script)
        self.requests = []
        self.connections = 0
        self._lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _next(self):
        with self._lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def _accept(self):
        import socket
        import threading

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
        import socket
        import struct
        import time

        conn.settimeout(5)
        f = conn.makefile("rb")
        try:
            while True:
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
                action = self._next()
                extra = {}
                if action == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if isinstance(action, tuple) and action[0] == "sleep":
                    time.sleep(action[1])
                    action = 200
                close = action == "close"
                if close:
                    action = 200
                if isinstance(action, tuple):
                    action, extra = action
                payload = b'{"ok":true}'
                head = f"HTTP/1.1 {action} X\r\nContent-Length: {len(payload)}\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in extra.items())
                if close:
                    head += "Connection: close\r\n"
                conn.sendall(head.encode("latin-1") + b"\r\n" + payload)
                if close:
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
