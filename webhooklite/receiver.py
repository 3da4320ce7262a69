"""Receiving: verify, parse, dedupe and route a webhook (sans-IO core + WSGI).

:meth:`Receiver.handle` takes a request's method, path, headers and raw body
and returns a :class:`Response`; the transports (``server.py``, WSGI here)
only move bytes. Checks run in this order: path (404), method (405), size
(413, before the body is read), signature (401), body (400), duplicate
(2xx, or 409 while in flight), handlers (500 if one raised).
"""
from __future__ import annotations

from _thread import allocate_lock  # threading.Lock itself, without loading threading at import

from . import _lazylog
from .errors import PayloadError, SignatureError
from .events import Event, Router, decode_body, encode_json, event_from
from .headers import Headers, parse_content_length, parse_list, parse_uint
from .signing import DEFAULT_TOLERANCE, SCHEMES, Signer
from .store import MemoryStore, _takes_holder

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see webhooklite/__init__.py)
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

    from .signing import Secret

__all__ = ["Receiver", "Response"]

log = _lazylog.getLogger("webhooklite")  # logging is imported when first used

_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class Response:
    """What a receiver answers: a status, headers and a body (JSON)."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Optional[Iterable[Tuple[str, str]]] = None, body: bytes = b"") -> None:
        #: The HTTP status code.
        self.status = status
        #: Response headers as ``(name, value)`` pairs (Content-Length is the transport's).
        #: A tuple: the receiver's fixed answers are shared by every request.
        self.headers: Tuple[Tuple[str, str], ...] = tuple(headers) if headers else ()
        #: The response body.
        self.body = body

    @classmethod
    def json(cls, status: int, value: Any, headers: Optional[List[Tuple[str, str]]] = None) -> "Response":
        return cls(status, [("Content-Type", "application/json")] + list(headers or ()), encode_json(value))

    @property
    def reason(self) -> str:
        reason = _REASONS.get(self.status)
        if reason is None:
            try:
                from http import HTTPStatus  # the enum only; imported for a rare status

                reason = HTTPStatus(self.status).phrase
            except ValueError:
                reason = ""
        return reason

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:80]!r}>"


def _error(status: int, message: str, headers: Optional[List[Tuple[str, str]]] = None) -> Response:
    return Response.json(status, {"error": message}, headers)


def _fixed(status: int, fields: Dict[str, str], headers: Optional[List[Tuple[str, str]]] = None) -> Response:
    """A constant answer, its JSON written here: ``import webhooklite`` does not load json."""
    for text in (*fields, *fields.values()):
        if not (text.isascii() and text.isprintable()) or '"' in text or "\\" in text:
            raise ValueError(f"a fixed answer's text needs no JSON escapes: {text!r}")
    body = "{" + ",".join(f'"{k}":"{v}"' for k, v in fields.items()) + "}"
    return Response(status, [("Content-Type", "application/json")] + list(headers or ()), body.encode("ascii"))


_OK = _fixed(200, {"status": "ok"})
_DUPLICATE = _fixed(200, {"status": "duplicate"})
_IGNORED = _fixed(200, {"status": "ignored", "reason": "no handler for this event type"})
_NOT_FOUND = _fixed(404, {"error": "not found"})
_NOT_POST = _fixed(405, {"error": "method not allowed: webhooks are POSTed"}, [("Allow", "POST")])
_BUSY = _fixed(409, {"error": "this message is being handled right now; retry later"}, [("Retry-After", "1")])
_HANDLER_FAILED = _fixed(500, {"error": "a handler failed; the sender should retry"})
_ACCEPTED = _fixed(202, {"status": "accepted"})
_INBOX_DOWN = _fixed(503, {"error": "the delivery could not be stored right now; retry later"}, [("Retry-After", "5")])
_BAD_LENGTH = _fixed(400, {"error": "Content-Length is not a number (or its values differ)"})


def _stored_answer(new: Optional[bool], error: Optional[BaseException]) -> Response:
    """The answer to a delivery handed to the inbox: stored (202), a stored id (200), or not stored (503)."""
    if error is not None:  # the database is down, full, locked: the sender retries later
        log.error("webhook not stored (503): the inbox failed: %s", error)
        return _INBOX_DOWN
    return _ACCEPTED if new else _DUPLICATE


def _unsigned_timestamp(h: Headers) -> Optional[int]:
    return parse_uint(h.get("webhook-timestamp") or h.get("svix-timestamp") or "")


class Receiver:
    """Verifies signed webhooks and routes each event to the functions registered for it.

    A Receiver is also a WSGI application (``gunicorn myapp:receiver``).

    ``secret`` is a secret or a list of them (newest first); ``None`` accepts
    unsigned requests, for development only. ``path`` limits the receiver to
    one path (others are 404). ``store`` remembers handled message ids
    (default: in memory, bounded); see ``webhooklite.store``. With ``inbox``
    (a :class:`~webhooklite.Inbox`), a verified delivery is stored durably and
    answered 202 before any handler runs; the inbox's workers run the handlers.
    """

    def __init__(
        self,
        secret: Optional[Secret],
        *,
        scheme: str = "standard",
        path: Optional[str] = None,
        tolerance: float = DEFAULT_TOLERANCE,
        max_body: int = 1_048_576,
        store: Any = None,
        inbox: Any = None,
        now: Optional[Callable[[], float]] = None,
    ) -> None:
        if path is not None and not path.startswith("/"):
            raise ValueError(f"path starts with '/': {path!r}")
        if max_body < 0:
            raise ValueError("max_body is a number of bytes, at least 0")
        #: The signing scheme: "standard", "github" or "stripe".
        self.scheme = scheme
        #: The one path this receiver answers on, or None for any path.
        self.path = path
        #: Seconds a signature's timestamp may be off, past or future.
        self.tolerance = tolerance
        #: The largest body accepted, in bytes (inclusive); larger is 413.
        self.max_body = max_body
        #: The dedupe store.
        self.store: Any = store if store is not None else MemoryStore()
        self._holder_store: Optional[Tuple[Any, bool]] = None  # (store, whether it takes holder=): see _holders
        self._signer: Optional[Signer] = Signer(secret, scheme, now=now) if secret is not None else None
        if secret is None:
            if scheme not in SCHEMES:
                raise ValueError(f"unknown scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
            log.warning("Receiver has no secret: it accepts unsigned requests from anyone (development only)")
        self._router = Router()
        self._counts: Dict[int, int] = {}  # answers by status, for metrics()
        self._counts_lock = allocate_lock()
        #: The durable inbox, or None: handlers then run inside the request.
        self.inbox = inbox
        if inbox is not None:
            inbox.bind(self)

    def __repr__(self) -> str:
        return (
            f"Receiver(scheme={self.scheme!r}, path={self.path!r}, "
            f"signed={self._signer is not None}, handlers={len(self._router)})"
        )

    # -- registration -------------------------------------------------------

    def on(self, pattern: str, handler: Optional[Callable[[Event], Any]] = None) -> Any:
        """Register ``handler`` for event types matching ``pattern``.

        As a decorator, ``@receiver.on("payment.*")``; as a call,
        ``receiver.on("payment.completed", notify)``. Returns the function
        unchanged. Patterns are shell-style; ``"*"`` sees every event.
        """
        if not isinstance(pattern, str) or not pattern:
            raise ValueError("a pattern is a non-empty string such as 'payment.*' or '*'")
        if handler is not None:
            self._router.add(pattern, handler)
            return handler

        def register(fn: Callable[[Event], Any]) -> Callable[[Event], Any]:
            self._router.add(pattern, fn)
            return fn

        return register

    # -- metrics ------------------------------------------------------------

    def _count(self, response: Response) -> Response:
        """Count an answer for :meth:`metrics` (transports call it for the answers they make themselves)."""
        with self._counts_lock:
            self._counts[response.status] = self._counts.get(response.status, 0) + 1
        return response

    def metrics(self) -> str:
        """Requests answered, by status, in Prometheus' text format (``serve(metrics_path="/metrics")``)."""
        from .metrics import Counter, render

        family = Counter("webhooklite_receiver_requests_total", "Requests the receiver answered, by status.", ("status",))
        with self._counts_lock:
            counts = dict(self._counts)
        for status, n in sorted(counts.items()):
            family.inc(str(status), by=n)
        return render([family])

    # -- the sans-IO core ---------------------------------------------------

    def check(self, method: str, path: str, content_length: Optional[int]) -> Optional[Response]:
        """The checks that need no body: path (404), method (405), size (413).

        Transports call this before reading the body, so an oversized body is
        refused without being read. Returns None when the request may go on.
        """
        if self.path is not None:
            p = path.split("?", 1)[0]
            if p != self.path:
                return self._count(_NOT_FOUND)
        if method != "POST":
            return self._count(_NOT_POST)
        if content_length is not None and content_length > self.max_body:
            return self._count(_error(413, f"the body is over the {self.max_body}-byte limit"))
        return None

    def handle(
        self,
        method: str,
        path: str,
        headers: Union[Headers, Mapping[str, str], Iterable[Tuple[str, str]]],
        body: bytes,
    ) -> Response:
        """Answer one request: verify, parse, dedupe, run the handlers."""
        refused = self.check(method, path, len(body))
        if refused is not None:
            return refused
        return self.process(headers if isinstance(headers, Headers) else Headers(headers), body)

    def process(self, h: Headers, body: bytes) -> Response:
        """The steps after :meth:`check`: signature, body, duplicate, handlers."""
        response = self._process(h, body)
        assert response is not None  # None is for a reply (see _answer): never here
        return self._count(response)

    def _answer(self, h: Headers, body: bytes, reply: Callable[[Response], None]) -> Optional[Response]:
        """As :meth:`process`, for a server that can answer from another thread: a delivery bound
        for the inbox returns None, and ``reply(response)`` is called once, from the inbox's writer
        thread, when it is stored (202), a duplicate (200), or could not be stored (503)."""
        response = self._process(h, body, reply)
        return None if response is None else self._count(response)

    def _process(self, h: Headers, body: bytes, reply: Optional[Callable[[Response], None]] = None) -> Optional[Response]:
        admitted = self._admit(h, body, reply)
        if admitted is None or isinstance(admitted, Response):
            return admitted
        event, handlers = admitted
        failed = False
        try:
            for handler in handlers:
                try:
                    result = handler(event)
                    if hasattr(result, "__await__"):  # an async def handler: run it on our own loop
                        self._loop().run(result)
                except Exception:
                    failed = True
                    self._log_failure(handler, event)
        except BaseException:  # KeyboardInterrupt, SystemExit: not handled, so not done either
            failed = True
            raise
        finally:  # the id must not stay busy
            self._settle(event, failed)
        return _HANDLER_FAILED if failed else _OK

    def _admit(
        self, h: Headers, body: bytes, reply: Optional[Callable[[Response], None]] = None
    ) -> Union[None, Response, Tuple[Event, Tuple[Callable[[Event], Any], ...]]]:
        """Signature, body and duplicate checks: the answer, or the event and the handlers to run
        (or None: stored in the inbox, answered through ``reply``; see :meth:`_answer`).

        When handlers are returned the id is claimed in the store, and the
        caller must :meth:`_settle` it (the ASGI transport runs the handlers
        between the two).
        """
        signed_id = None
        if self._signer is not None:
            try:
                ts, signed_id = self._signer.check(body, h, tolerance=self.tolerance)
            except SignatureError as e:
                log.warning("webhook refused (401): %s", str(e))  # text: a record must not hold the body
                return _error(e.status, e.public)
        else:
            ts = _unsigned_timestamp(h)
        try:
            data = decode_body(body, h.get("content-type"))
        except PayloadError as e:
            log.warning("webhook refused (400): %s", str(e))
            return _error(e.status, str(e))
        # The type and the id come from what the signature covers (events.event_type/event_id):
        # an unsigned header added to a captured request must not re-route it or make it look new.
        event = event_from(self.scheme, h, body, data, ts, signed_id, signed=self._signer is not None)
        eid = event.id
        handlers = self._router.match(event.type)
        if self.inbox is not None and handlers:
            # Stored durably first, answered 202, handled later; a stored id is a duplicate.
            try:
                if reply is None:
                    return _stored_answer(self.inbox.put(event), None)
                self.inbox._put_later(event, lambda new, error: reply(self._count(_stored_answer(new, error))))
                return None
            except Exception as e:  # the database is down, full, locked: the sender retries later
                return _stored_answer(None, e)
        if eid is not None:
            store = self.store
            # The request's own Event says whose claim it is (see webhooklite.store, takes_holder).
            state = store.begin(eid, holder=event) if self._holders(store) else store.begin(eid)
            if state == "done":
                return _DUPLICATE
            if state == "busy":
                return _BUSY
        if not handlers:
            self._settle(event, False)  # remembered too: a replay of it is a duplicate, whatever its headers
            return _IGNORED
        return event, handlers

    def _settle(self, event: Event, failed: bool) -> None:
        """Record the handlers' outcome for the id ``event``'s request claimed: done, or free to be handled again."""
        eid = event.id
        if eid is not None:
            store = self.store
            end = store.abort if failed else store.commit
            if self._holders(store):
                end(eid, holder=event)
            else:
                end(eid)

    def _holders(self, store: Any) -> bool:
        """Whether to tell ``store`` whose claim a call is for (``holder=``); asked once per store object."""
        known = self._holder_store
        if known is None or known[0] is not store:
            known = self._holder_store = (store, _takes_holder(store))
        return known[1]

    @staticmethod
    def _log_failure(handler: Any, event: Event) -> None:
        log.exception("handler %s failed on %s event %s", getattr(handler, "__qualname__", handler), event.type, event.id)

    def _loop(self) -> Any:
        runner = self.__dict__.get("_loop_thread")
        if runner is None:
            from ._loop import LoopThread

            runner = self.__dict__.setdefault("_loop_thread", LoopThread())
        return runner

    # -- WSGI ---------------------------------------------------------------

    def __call__(self, environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        """The WSGI application: ``gunicorn myapp:receiver``."""
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        length_text = environ.get("CONTENT_LENGTH") or ""
        head_only = method == "HEAD"
        length: Optional[int] = None
        if length_text:
            length = parse_content_length(length_text)  # the grammar every transport shares
            if length is None:
                return self._wsgi_answer(start_response, _BAD_LENGTH, head_only)
        response = self.check(method, path, length)
        if response is None:
            stream = environ["wsgi.input"]
            if length is not None:
                body = stream.read(length) if length else b""
                if len(body) < length:
                    response = _error(400, "the body ended before Content-Length bytes")
            elif environ.get("wsgi.input_terminated"):  # gunicorn, waitress: de-chunked, ends at EOF
                body = stream.read(self.max_body + 1)
                if len(body) > self.max_body:
                    response = _error(413, f"the body is over the {self.max_body}-byte limit")
            elif "chunked" in (c.lower() for c in parse_list(environ.get("HTTP_TRANSFER_ENCODING", ""))):
                # The server hands over the raw chunked stream (wsgiref does): its end cannot be
                # found without blocking on the socket, so ask for a Content-Length instead.
                body = b""
                response = _error(411, "this server cannot read a chunked body: send Content-Length")
            else:
                body = b""
            if response is None:
                headers = {
                    key[5:].replace("_", "-").lower(): value
                    for key, value in environ.items()
                    if key.startswith("HTTP_")
                }
                if environ.get("CONTENT_TYPE"):
                    headers["content-type"] = environ["CONTENT_TYPE"]
                response = self.process(Headers._from_lower(headers), body)
        return self._wsgi_answer(start_response, response, head_only)

    @staticmethod
    def _wsgi_answer(start_response: Callable[..., Any], response: Response, head_only: bool) -> List[bytes]:
        headers = list(response.headers)
        headers.append(("Content-Length", str(len(response.body))))
        start_response(f"{response.status} {response.reason}", headers)
        # HEAD: the same head, no body (RFC 9110 §9.3.2), whether or not the server strips it.
        return [b""] if head_only else [response.body]

    # -- ASGI ---------------------------------------------------------------

    @property
    def asgi(self) -> Any:
        """This receiver as an ASGI 3 app (FastAPI/Starlette ``app.add_route("/hooks", receiver.asgi)``, uvicorn).

        Same checks, same answers as the WSGI app; handlers run in a thread pool.
        """
        app = getattr(self, "_asgi", None)
        if app is None:
            from .asgi import ASGIApp  # asyncio is imported only by those who use it

            app = self._asgi = ASGIApp(self)
        return app

    # -- serving ------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
        """Serve on ``host:port`` until Ctrl-C or SIGTERM, then return normally.

        webhooklite's own threaded HTTP/1.1 server (``server.py``, a thread per connection):
        fine for small deployments; behind a proxy with many workers, serve this WSGI app with gunicorn.
        """
        from .server import serve

        serve(self, host, port, **options)  # an inbox's handler threads start once the port is bound

    def start(self, host: str = "127.0.0.1", port: int = 0, **options: Any) -> Any:
        """Serve in a background thread; returns the running server (``.url``, ``.stop()``).

        Use it as a context manager: ``with receiver.start() as server: ...``.
        """
        from .server import WebhookServer

        server = WebhookServer(self, host, port, **options)
        server.start()
        try:
            self._serving(True)
        except BaseException:  # e.g. a closed inbox: no server left running that the caller cannot stop
            server.stop()
            raise
        return server

    def _serving(self, on: bool, timeout: Optional[float] = None) -> None:
        """A transport starts or stops serving: an inbox's handler threads follow (unless autostart=False);
        on stopping, handlers in flight get up to ``timeout`` to finish, then finish in the background."""
        inbox = self.inbox
        if inbox is not None and inbox.autostart:
            if on:
                inbox.start()
            else:
                inbox.stop(timeout)
