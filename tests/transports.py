"""The WSGI and ASGI transports of a Receiver, for tests driven against every transport.

Each is a context manager factory ``with transport(receiver) as call:`` where
``call(method, path, headers, body) -> (status, lower-case headers, body)``,
like ``conftest.socket_transport``; conftest registers them in TRANSPORTS.
"""
import asyncio
import contextlib
import http.client
import threading
import wsgiref.simple_server
import wsgiref.validate
from typing import Any, Dict, Iterator, List, Optional, Tuple

import webhooklite

Answer = Tuple[int, Dict[str, str], bytes]


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(wsgiref.simple_server.WSGIServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A broken app is a test failure: record it (the client sees a 500 or a reset).
        import traceback

        self.errors.append(traceback.format_exc())


@contextlib.contextmanager
def wsgi_server(app: Any) -> Iterator[Any]:
    """``app`` under wsgiref.simple_server on a free loopback port, in a thread."""
    server = wsgiref.simple_server.make_server(
        "127.0.0.1", 0, app, server_class=_Server, handler_class=_QuietHandler
    )
    server.errors = []
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def wsgi_transport(receiver: webhooklite.Receiver) -> Iterator[Any]:
    """The Receiver as a WSGI app, checked by wsgiref.validate, under wsgiref over a real socket."""
    with wsgi_server(wsgiref.validate.validator(receiver)) as server:
        port = server.server_address[1]

        def call(method: str, path: str, headers: Dict[str, str], body: bytes) -> Answer:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                answer = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
            finally:
                conn.close()
            assert not server.errors, server.errors[0]
            return answer

        yield call
    assert not server.errors, server.errors[0]


def asgi_scope(method: str, target: str, headers: List[Tuple[bytes, bytes]], **extra: Any) -> Dict[str, Any]:
    """An HTTP scope as an ASGI server builds it."""
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    scope.update(extra)
    return scope


class ASGICall:
    """Runs one request through an ASGI app as a server would, and checks what the app sends.

    The body arrives in ``chunk``-byte ``http.request`` messages; after the last
    one, ``receive()`` waits until the answer is complete and then says
    ``http.disconnect``. ``.received`` counts the body bytes the app asked for.
    """

    def __init__(self, chunks: List[bytes], disconnect_after: Optional[int] = None) -> None:
        self.messages: List[Dict[str, Any]] = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
        ] or [{"type": "http.request", "body": b"", "more_body": False}]
        if disconnect_after is not None:
            self.messages = self.messages[:disconnect_after] + [{"type": "http.disconnect"}]
        self.received = 0
        self.receive_calls = 0
        self.sent: List[Dict[str, Any]] = []
        self._done: Optional[asyncio.Event] = None

    async def receive(self) -> Dict[str, Any]:
        self.receive_calls += 1
        if self.messages:
            message = self.messages.pop(0)
            self.received += len(message.get("body", b""))
            return message
        if self._done is None:
            self._done = asyncio.Event()
        await self._done.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Dict[str, Any]) -> None:
        # What an ASGI server enforces: one start, then body messages until more_body is false.
        assert isinstance(message, dict) and isinstance(message.get("type"), str)
        if not self.sent:
            assert message["type"] == "http.response.start", message
            assert isinstance(message["status"], int)
            for name, value in message.get("headers", []):
                assert isinstance(name, bytes) and isinstance(value, bytes)
                assert name == name.lower()
        else:
            assert message["type"] == "http.response.body", message
            assert self.sent[-1].get("more_body", False) or self.sent[-1]["type"] == "http.response.start", (
                "a message after the answer was complete"
            )
            assert isinstance(message.get("body", b""), bytes)
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            if self._done is None:
                self._done = asyncio.Event()
            self._done.set()

    def answer(self, head: bool = False) -> Answer:
        """(status, headers, body) the app sent; ``head``: the answer to a HEAD, which has no body."""
        assert self.sent, "the app sent no answer"
        start, rest = self.sent[0], self.sent[1:]
        assert rest and not rest[-1].get("more_body", False), "the answer was not completed"
        headers: Dict[str, str] = {}
        for name, value in start.get("headers", []):
            headers[name.decode("latin-1")] = value.decode("latin-1")
        body = b"".join(m.get("body", b"") for m in rest)
        if head:
            assert body == b"", "a body in the answer to a HEAD"
        elif "content-length" in headers:
            assert int(headers["content-length"]) == len(body)
        return start["status"], headers, body


def run_asgi(
    app: Any,
    scope: Dict[str, Any],
    chunks: List[bytes],
    loop: Optional[asyncio.AbstractEventLoop] = None,
    disconnect_after: Optional[int] = None,
) -> ASGICall:
    """Call ``app(scope, receive, send)`` once, with a 5 s limit; return the exchange."""
    exchange = ASGICall(chunks, disconnect_after)

    async def go() -> None:
        await asyncio.wait_for(app(scope, exchange.receive, exchange.send), 5)

    if loop is None:
        asyncio.run(go())
    else:
        loop.run_until_complete(go())
    return exchange


def split(body: bytes, size: int = 1000) -> List[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


@contextlib.contextmanager
def asgi_transport(receiver: webhooklite.Receiver) -> Iterator[Any]:
    """``receiver.asgi`` called directly as an ASGI server would, on one event loop."""
    loop = asyncio.new_event_loop()
    app = receiver.asgi

    def call(method: str, path: str, headers: Dict[str, str], body: bytes) -> Answer:
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        if not any(k == b"content-length" for k, _ in raw):
            raw.append((b"content-length", str(len(body)).encode("ascii")))  # as http.client sends it
        return run_asgi(app, asgi_scope(method, path, raw), split(body), loop).answer(head=method == "HEAD")

    try:
        yield call
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


TRANSPORTS = {"wsgi": wsgi_transport, "asgi": asgi_transport}
