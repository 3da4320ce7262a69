"""ASGI 3 transport for a Receiver: ``receiver.asgi`` (FastAPI, Starlette, uvicorn).

    app.add_route("/webhooks", receiver.asgi)      # FastAPI / Starlette: POST /webhooks
    uvicorn myapp:receiver.asgi                     # the receiver alone

(``app.mount("/webhooks", ...)`` serves ``/webhooks/``: Starlette redirects
``/webhooks`` there with a 307, and webhook senders do not follow redirects.)

The same checks in the same order as the WSGI path and ``serve()``: path,
method and size (:meth:`Receiver.check`) before the body is read, so an
oversized request is answered 413 without reading it; then signature, body,
duplicate and handlers (:meth:`Receiver.process`). A sync handler runs in
a worker thread, so a slow one never blocks the loop; an ``async def``
handler is awaited on the loop. Standard library only.

What runs where. The checks before the handlers (signature, JSON, duplicate)
take microseconds when the signature is an HMAC (not ed25519, about 1 ms
each in pure Python), the body is small and the dedupe store is the
in-memory one: then they run on the loop, and a duplicate or a forged
request is answered without leaving it. Otherwise (a SQLiteStore, a custom
store, v1a keys, a large body) they run in a worker thread too, and so does
the store's commit after the handlers. So a receiver with ``async def``
handlers and the defaults never leaves the loop, and one with sync handlers
pays one hop to a thread per handler.
The threads are webhooklite's own (at most ``min(32, CPUs + 4)``, as
``asyncio.to_thread``'s default pool; each call carries the request task's
context variables): a hop costs about half of ``to_thread``'s. On Linux they
are SCHED_BATCH threads (same share of the CPU, no preempting on waking up), so
the loop that hands one a job goes on to its next wait before the job starts,
rather than being interrupted by a thread that then waits for the GIL it holds.
"""
import asyncio
import contextvars
import logging
import os
import queue
import threading
from typing import Any, Awaitable, Callable, Dict, List, MutableMapping, Optional, Tuple, TypeVar

from .headers import Headers, parse_content_length
from .events import is_async
from .receiver import _DUPLICATE, _HANDLER_FAILED, _IGNORED, _OK, _BAD_LENGTH, Receiver, Response, _error
from .store import MemoryStore

__all__ = ["ASGIApp"]

log = logging.getLogger("webhooklite")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
T = TypeVar("T")


class ASGIApp:
    """An ASGI 3 application serving one :class:`Receiver` (get it as ``receiver.asgi``).

    Answers ``http`` requests, refuses ``websocket`` connections, and completes the ``lifespan``
    protocol: with an inbox, startup starts its handlers and shutdown stops them (see _lifespan).
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
            await _lifespan(self.receiver, receive, send)
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


#: Bodies up to this size are verified and parsed on the event loop (an HMAC and json.loads
#: of 64 KiB take well under a millisecond); larger ones in a worker thread.
_ON_LOOP_MAX_BODY = 64 * 1024


def _admits_on_loop(receiver: Receiver, body: bytes) -> bool:
    """Whether ``receiver._admit(h, body)`` is CPU work of microseconds, fit for the event loop.

    Only for what is known: an HMAC signature (no ed25519 public key, whose check is ~1 ms
    of pure Python), a small body, no inbox (its write waits for a commit), and the in-memory
    store, whose methods never wait on I/O. Anything else (a SQLiteStore, a custom store, an
    unknown receiver) runs in a thread.
    """
    if len(body) > _ON_LOOP_MAX_BODY or getattr(receiver, "inbox", True) is not None:
        return False
    signer = getattr(receiver, "_signer", True)
    if signer is not None and getattr(signer, "_public", True):
        return False
    store = type(receiver.store)
    return (
        store.begin is MemoryStore.begin and store.commit is MemoryStore.commit and store.abort is MemoryStore.abort
    )


async def _process(receiver: Receiver, h: Headers, body: bytes) -> Response:
    """Signature, body, dedupe and handlers: sync handlers in a worker thread (with this task's
    context variables: tracing, logging), ``async def`` ones awaited here, on the loop; the
    checks before them on the loop when they cannot block (:func:`_admits_on_loop`), else in a thread.

    A request cancelled meanwhile (a timeout, the server shutting down) never leaves its id
    claimed, and never frees it while one of its handlers still runs: what a worker thread is
    doing for it goes on to its end, and the id is given up after (``_Threads.run``'s ``then``).
    """
    on_loop = _admits_on_loop(receiver, body)
    if on_loop:
        admitted = receiver._admit(h, body)
    elif not receiver._router.has_async:
        return await _threads().run(receiver.process, h, body)  # one hop, which settles the id itself
    else:  # a store's begin() may block; cancelled once it has claimed the id, it gives the id up
        admitted = await _hop(receiver._admit, h, body, then=lambda claimed: _give_up(receiver, claimed))
    assert admitted is not None  # None is for a reply (the built-in server's): never here
    if isinstance(admitted, Response):
        return receiver._count(admitted)
    event, handlers = admitted
    give_up = lambda result: receiver._settle(event, True)  # noqa: E731  (in a thread, once the handler has ended)
    handed = False  # a sync handler is in its thread: cancelled now, give_up follows it there
    failed = False
    try:
        for handler in handlers:
            try:
                if is_async(handler):
                    await handler(event)
                else:
                    handed = True
                    result = await _hop(handler, event, then=give_up)
                    handed = False
                    if hasattr(result, "__await__"):
                        await result
            except Exception:
                handed = False
                failed = True
                receiver._log_failure(handler, event)
    except BaseException:  # cancelled, or e.g. KeyboardInterrupt in an async handler
        if not handed:  # no handler of ours runs any more: give the id up now
            if on_loop:
                receiver._settle(event, True)
            else:
                _threads().run(receiver._settle, event, True)  # a store may block: in a thread, awaited or not
        raise
    if on_loop:
        receiver._settle(event, failed)
    else:  # a store's commit() may block too; it runs even if the request is cancelled first
        def settle_anyway(result: Any) -> None:
            if result is _SKIPPED:
                receiver._settle(event, failed)

        await _hop(receiver._settle, event, failed, then=settle_anyway)
    return receiver._count(_HANDLER_FAILED if failed else _OK)


async def _hop(fn: Callable[..., T], *args: Any, then: Callable[[Any], Any]) -> T:
    """``await fn(*args)`` in a worker thread; if the request is cancelled meanwhile, ``then`` follows
    ``fn`` in a thread, with its result (see ``_Threads.run``)."""
    job = _threads().run(fn, *args, then=then)
    try:
        return await job
    except asyncio.CancelledError:
        if not job.cancelled():  # fn's result came back just as the request was cancelled
            _threads().run(then, None if job.exception() else job.result())
        raise


def _give_up(receiver: Receiver, admitted: Any) -> None:
    """(In a thread) free the id ``receiver._admit`` claimed for a request no one waits for any more."""
    if isinstance(admitted, tuple):
        receiver._settle(admitted[0], True)


class _Threads:
    """The worker threads that run sync work for the ASGI app: one queue, daemon threads
    started as needed up to ``max_threads``, each call run in the caller's context.

    It does what ``asyncio.to_thread`` does with half the cost per call (no
    concurrent.futures Future chained to an asyncio one): the hop is most of the
    price of a small request at one connection.
    """

    def __init__(self, max_threads: int) -> None:
        self.max_threads = max_threads
        self._reset()

    def _reset(self) -> None:  # also in a forked child, whose threads did not survive the fork
        self._jobs: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a job that no caller has counted on yet
        self._count = 0

    def run(self, fn: Callable[..., T], *args: Any, then: Optional[Callable[[Any], Any]] = None) -> "asyncio.Future[T]":
        """``fn(*args)`` in a worker thread; a future of the running loop for its result.

        Cancelling the future (its request was cancelled) skips ``fn`` if it has not started, and
        does not stop it if it has. ``then``: what must follow if the request is cancelled, run
        exactly once in a thread, after ``fn`` has ended, with its result (None if it raised), or
        with ``_SKIPPED`` if ``fn`` never ran. (Whichever side sees the cancellation runs it: the
        worker, ``_resolve`` on the loop, or the awaiting coroutine; see ``_hop``.)
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        job = (loop, future, contextvars.copy_context(), fn, args, then)
        with self._lock:
            if self._idle:  # a waiting thread takes it
                self._idle -= 1
                start = False
            else:
                start = self._count < self.max_threads  # else all busy: the first one free takes it
                self._count += start
        if start:
            try:
                threading.Thread(target=self._work, name="webhooklite-asgi", daemon=True).start()
            except BaseException:  # e.g. can't start a new thread: the job is not queued, nor run later
                with self._lock:
                    self._count -= 1
                raise
        self._jobs.put(job)
        return future

    def _work(self) -> None:
        _wait_your_turn()
        jobs = self._jobs
        while True:
            loop, future, context, fn, args, then = jobs.get()
            if future.cancelled():  # its request was cancelled while it waited: skip it
                if then is not None:
                    _follow(context, then, _SKIPPED)
            else:
                try:
                    result, error = context.run(fn, *args), None
                except BaseException as e:  # handed to the awaiting task, as concurrent.futures does
                    result, error = None, e
                if then is not None and future.cancelled():  # no one waits for it now
                    _follow(context, then, result)
                else:
                    try:
                        loop.call_soon_threadsafe(_resolve, future, result, error, then)
                    except RuntimeError:  # the loop is closed: no one is waiting any more
                        if then is not None:
                            _follow(context, then, result)
                del result, error
            del loop, future, context, fn, args, then  # hold nothing while idle
            with self._lock:
                self._idle += 1


def _wait_your_turn() -> None:
    """Make this thread SCHED_BATCH (Linux; elsewhere nothing changes): woken, it waits for its turn
    instead of preempting the thread that woke it.

    The loop's thread hands a job over and wakes a worker while holding the GIL: a worker that
    preempts it only finds the GIL taken and sleeps again, and the same happens the other way when
    the result goes back. One request at a time on one core, that made 6-8 context switches a
    request instead of 2-3, and the hop cost 35 µs instead of 20 (benchmarks/README.md). The
    scheduler still gives the thread its full share of the CPU (the nice value is unchanged); only
    a wakeup waits for the running thread to block or use up its slice. Threads a handler starts
    inherit the policy. A policy other than the default one, which the thread inherited from the
    loop's (``chrt`` on the server: real-time, or SCHED_IDLE), is the operator's, and left alone.
    """
    if not hasattr(os, "sched_setscheduler") or not hasattr(os, "SCHED_BATCH"):
        return
    try:
        if os.sched_getscheduler(0) == os.SCHED_OTHER:  # 0: this thread, on Linux
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError:  # e.g. a seccomp filter: the threads work the same, only the hop costs more
        pass


#: What ``then`` gets when its job never ran (its request was cancelled first).
_SKIPPED = object()


def _follow(context: contextvars.Context, then: Callable[[Any], Any], result: Any) -> None:
    try:
        context.run(then, result)
    except Exception:
        log.exception("webhooklite: giving up a cancelled request's id failed")


def _resolve(future: "asyncio.Future[Any]", result: Any, error: Optional[BaseException],
             then: Optional[Callable[[Any], Any]] = None) -> None:
    if not future.cancelled():
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    elif then is not None:  # cancelled after its worker looked: the follow-up is this side's
        _threads().run(then, result)


_THREADS: List[_Threads] = []
_THREADS_LOCK = threading.Lock()


def _threads() -> _Threads:
    """The process's one pool (loops in several threads share it)."""
    if not _THREADS:
        with _THREADS_LOCK:
            if not _THREADS:
                pool = _Threads(min(32, (os.cpu_count() or 1) + 4))
                if hasattr(os, "register_at_fork"):
                    os.register_at_fork(after_in_child=pool._reset)
                _THREADS.append(pool)
    return _THREADS[0]


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


def _raw_headers(response: Response) -> List[Tuple[bytes, bytes]]:
    raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.headers]
    raw.append((b"content-length", str(len(response.body)).encode("ascii")))
    return raw


# The receiver's fixed answers (module constants: their ids are stable) are encoded once.
_RAW_HEADERS = {id(r): _raw_headers(r) for r in (_OK, _DUPLICATE, _IGNORED)}


async def _answer(send: Send, response: Response, head_only: bool = False) -> None:
    raw_headers = _RAW_HEADERS.get(id(response))
    if raw_headers is None:
        raw_headers = _raw_headers(response)
    else:
        raw_headers = list(raw_headers)  # the server's own: it may add to it
    await send({"type": "http.response.start", "status": response.status, "headers": raw_headers})
    # HEAD: the same head, no body (RFC 9110 §9.3.2), whether or not the server strips it.
    await send({"type": "http.response.body", "body": b"" if head_only else response.body, "more_body": False})


#: At lifespan's shutdown, how long (seconds) an inbox's handlers in flight get to finish and be recorded.
_SHUTDOWN_WAIT = 5.0


async def _lifespan(receiver: Receiver, receive: Receive, send: Send) -> None:
    """Startup starts an inbox's handlers in this process (events stored before a restart are
    handled at once); shutdown stops them, those in flight finishing and being recorded, as
    ``serve()`` does. Without an inbox there is nothing to start or stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                receiver._serving(True)
            except Exception as e:  # e.g. the inbox is closed: the server then does not start
                await send({"type": "lifespan.startup.failed", "message": f"webhooklite: {e}"})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if getattr(receiver, "inbox", None) is not None:
                await _threads().run(receiver._serving, False, _SHUTDOWN_WAIT)  # it waits on threads
            await send({"type": "lifespan.shutdown.complete"})
            return
