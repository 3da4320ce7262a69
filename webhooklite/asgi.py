"""ASGI 3 transport for a Receiver: ``receiver.asgi`` (FastAPI, Starlette, uvicorn).

    app.add_route("/webhooks", receiver.asgi)      # FastAPI / Starlette: POST /webhooks
    uvicorn myapp:receiver.asgi                     # the receiver alone

(``app.mount("/webhooks", ...)`` serves ``/webhooks/``: Starlette redirects
``/webhooks`` there with a 307, and webhook senders do not follow redirects.)

The same checks in the same order as the WSGI path and ``serve()``: path,
method and size (:meth:`Receiver.check`) before the body is read, so an
oversized request is answered 413 without reading it; then signature, body,
duplicate and handlers (:meth:`Receiver.process`). Handlers are ordinary
functions: they run in the event loop's default thread pool, so a slow one
never blocks the loop. Standard library only.
"""
import asyncio
from typing import Any, Awaitable, Callable, Dict, List, MutableMapping, Optional, Tuple

from .headers import Headers, parse_content_length
from .events import is_async
from .receiver import _HANDLER_FAILED, _OK, _BAD_LENGTH, Receiver, Response, _error

__all__ = ["ASGIApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ASGIApp:
    """An ASGI 3 application serving one :class:`Receiver` (get it as ``receiver.asgi``).

    Answers ``http`` requests, completes the ``lifespan`` protocol (there is
    nothing to start or stop), and refuses ``websocket`` connections.
    """

    def __init__(self, receiver: Receiver) -> None:
        #: The receiver whose checks and handlers answer each request.
        self.receiver = receiver

    def __repr__(self) -> str:
        return f"<ASGIApp {self.receiver!r}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)
        elif kind == "websocket":
            # Closing before accepting is how ASGI refuses a websocket (the server answers 403).
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
        else:
            raise ValueError(f"webhooklite's ASGI app does not serve {kind!r} connections")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        receiver = self.receiver
        headers: Dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers") or ():
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = headers[name] + ", " + value if name in headers else value
        length: Optional[int] = None
        length_text = headers.get("content-length")
        response: Optional[Response] = None
        method = scope.get("method", "GET")
        if length_text is not None:
            length = parse_content_length(length_text)  # the grammar every transport shares
            if length is None:
                response = _BAD_LENGTH
        if response is None:
            response = receiver.check(method, _full_path(scope), length)
        if response is None:
            body = await _read_body(receive, receiver.max_body)
            if body is None:
                return  # the client went away: there is no one to answer
            if len(body) > receiver.max_body:
                response = _error(413, f"the body is over the {receiver.max_body}-byte limit")
            elif length is not None and len(body) != length:
                response = _error(400, "the body does not match its Content-Length")
            else:
                response = await _process(receiver, Headers._from_lower(headers), body)
        await _answer(send, response, method == "HEAD")


async def _process(receiver: Receiver, h: Headers, body: bytes) -> Response:
    """Signature, body, dedupe and handlers: sync work in the loop's default thread pool (with this
    task's context variables: tracing, logging), ``async def`` handlers awaited here, on the loop."""
    if not receiver._router.has_async:
        return await asyncio.to_thread(receiver.process, h, body)  # one hop for the whole request
    admitted = await asyncio.to_thread(receiver._admit, h, body)  # a store's begin() may block
    if isinstance(admitted, Response):
        return receiver._count(admitted)
    event, handlers = admitted
    failed = False
    try:
        for handler in handlers:
            try:
                if is_async(handler):
                    await handler(event)
                else:
                    result = await asyncio.to_thread(handler, event)
                    if hasattr(result, "__await__"):
                        await result
            except Exception:
                failed = True
                receiver._log_failure(handler, event)
    except BaseException:  # cancelled (the server shut down): the id must not stay busy
        failed = True
        raise
    finally:
        receiver._settle(event.id, failed)  # not awaited: it must run even while being cancelled
    return receiver._count(_HANDLER_FAILED if failed else _OK)


def _full_path(scope: Scope) -> str:
    """The request's whole path, as ``Receiver.check`` compares it with ``Receiver.path``.

    ASGI says ``path`` includes ``root_path`` (uvicorn >= 0.26, Starlette >=
    0.33 mounts); older mounts stripped it, so put it back when missing.
    """
    path: str = scope.get("path") or "/"
    root: str = scope.get("root_path") or ""
    if root and not path.startswith(root):
        path = root.rstrip("/") + path
    return path


async def _read_body(receive: Receive, limit: int) -> Optional[bytes]:
    """The request body, or None if the client disconnected; stops reading past ``limit``."""
    chunks: List[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body") or b""
        if chunk:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                break  # over the limit: read no further, the answer is 413
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _answer(send: Send, response: Response, head_only: bool = False) -> None:
    raw_headers: List[Tuple[bytes, bytes]] = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.headers
    ]
    raw_headers.append((b"content-length", str(len(response.body)).encode("ascii")))
    await send({"type": "http.response.start", "status": response.status, "headers": raw_headers})
    # HEAD: the same head, no body (RFC 9110 §9.3.2), whether or not the server strips it.
    await send({"type": "http.response.body", "body": b"" if head_only else response.body, "more_body": False})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
