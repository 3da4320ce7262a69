"""Sending from asyncio: AsyncSender and ``asend()``, on asyncio transports with kept-alive connections.

    async with webhooklite.AsyncSender(url, secret) as sender:
        delivery = await sender.send("payment.completed", {"order_id": "ABC123"})

    delivery = await webhooklite.asend(url, "payment.completed", {...}, secret=secret)

The Sender's arguments, answers and rules: the request bytes, the judging of
an answer, the retry decision and the words of an error all come from
``_wire``, and the response is read by the same sans-IO
``_response.ResponseReader`` as the Sender's; this module only connects,
writes, waits and sleeps. Standard library only.

Each connection is an ``asyncio.Protocol`` (the layer under asyncio's
streams) whose ``data_received`` feeds the reader directly: no stream buffer
in between, and the protocol knows at once when an idle connection is closed
by the server or receives bytes out of turn, which streams keep in a private
buffer. At most ``max_connections`` (32) per AsyncSender; more concurrent
sends wait for one to come free, under the connect budget. Every attempt's
exchange runs under one timer for the read budget; connecting (the name
resolved in a thread, every address 250 ms apart, TLS) under the connect
budget.
"""
from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterable, List, Mapping, Optional, Set, Tuple, Union

from ._response import ProtocolError, ResponseReader
from ._wire import (
    RESPONSE_CAP,
    STAGGER,
    Closed,
    ConnectTimeout,
    Delivery,
    ReadTimeout,
    Retry,
    Stale,
    Target,
    Timeout,
    check_value,
    failed,
    judge,
    next_wait,
)
from .events import encode_event, encode_json
from .guard import AddressGuard, addresses, guard_for
from .signing import new_message_id

if TYPE_CHECKING:
    from .signing import Secret

__all__ = ["AsyncSender", "asend"]


class _Connection(asyncio.Protocol):
    """One connection to the origin: feeds the answer's bytes to a ResponseReader, wakes the sender when it is done."""

    def __init__(self) -> None:
        self.transport: Any = None
        #: The answer being read, or None while idle.
        self.reader: Optional[ResponseReader] = None
        #: Resolved when the answer is complete (or failed).
        self.waiter: Optional["asyncio.Future[None]"] = None
        #: Whether this exchange is on a kept-alive connection (a close before any byte may be retried).
        self.reused = False
        #: True once the connection cannot carry another request.
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        if reader is None or reader.done:
            self.close()  # bytes out of turn: this connection is out of step
            return
        try:
            if reader.feed(data):
                self._wake(None)
        except ProtocolError as exc:
            self.closed = True
            self._wake(exc)

    def eof_received(self) -> bool:
        self._ended(None)
        return False  # close the transport

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._ended(exc)

    def _ended(self, exc: Optional[BaseException]) -> None:
        self.closed = True
        reader = self.reader
        if reader is None or reader.done:
            return
        if reader.feed_eof():
            self._wake(None)
        elif self.reused and not reader.started:
            self._wake(Stale())
        elif isinstance(exc, (ConnectionResetError, ConnectionAbortedError)):
            self._wake(exc)
        else:
            self._wake(Closed("the server closed the connection "
                              + ("before its answer ended" if reader.started else "without answering")))

    def _wake(self, exc: Optional[BaseException]) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    def expire(self) -> None:
        """The read budget is spent: fail the exchange (the connection is closed after)."""
        self.closed = True
        self._wake(ReadTimeout("timed out"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


async def _open(loop: asyncio.AbstractEventLoop, found: List[Tuple[int, Any]], deadline: float) -> socket.socket:
    """A connected socket to the first of ``found`` that answers before ``deadline`` (loop time).

    As the Sender's: a new attempt every ``STAGGER`` seconds or as soon as one
    fails, all racing; the first to connect wins (RFC 8305).
    """

    async def one(family: int, sockaddr: Any) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, sockaddr)
        except BaseException:
            sock.close()
            raise
        return sock

    pending: Set["asyncio.Task[socket.socket]"] = set()
    tried: Dict["asyncio.Task[socket.socket]", Any] = {}
    errors: List[BaseException] = []
    i = 0
    try:
        while True:
            if i < len(found):
                task = loop.create_task(one(*found[i]))
                tried[task] = found[i][1][0]
                pending.add(task)
                i += 1
            left = deadline - loop.time()
            if left <= 0:
                raise ConnectTimeout("no answer from " + ", ".join(str(tried[t]) for t in pending))
            done, pending = await asyncio.wait(pending, timeout=min(left, STAGGER) if i < len(found) else left,
                                               return_when=asyncio.FIRST_COMPLETED)
            winner = None
            for task in done:
                exc = task.exception()
                if exc is not None:
                    errors.append(exc)
                elif winner is None:
                    winner = task.result()
                else:
                    task.result().close()  # two connected in the same instant: keep one
            if winner is not None:
                return winner
            if not pending and i >= len(found):
                raise errors[-1]
    finally:
        for task in pending:
            task.cancel()


class _Pool:
    """Connections to one origin on one event loop: idle ones reused, at most ``limit`` open."""

    def __init__(self, target: Target, timeout: Timeout, ssl_context: Any, guard: Optional[AddressGuard],
                 resolver: Optional[Callable[[str, int], Iterable[str]]], limit: int,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.target, self.timeout, self.ssl_context = target, timeout, ssl_context
        self.guard, self.resolver, self.limit, self.loop = guard, resolver, limit, loop
        self._idle: List[_Connection] = []
        self._open = 0  # connections open or opening, idle ones included
        self._waiters: Deque["asyncio.Future[None]"] = deque()
        self._closed = False

    async def get(self, deadline: float) -> Tuple[_Connection, bool]:
        """An idle connection (True) or a new one (False); waits for a free slot until ``deadline``."""
        while True:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn, True
                self._open -= 1
            if self._open < self.limit:
                return await self.new(deadline), False
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            timer = self.loop.call_at(deadline, _expire_waiter, waiter, self.limit)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._wake_one()  # woken for a free slot, then cancelled: the next waiter takes it
                raise
            finally:
                timer.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def new(self, deadline: float) -> _Connection:
        """A new connection under the connect budget: resolve (in a thread), TCP, TLS."""
        self._open += 1
        try:
            return await self._connect(deadline)
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise

    async def _connect(self, deadline: float) -> _Connection:
        loop, target = self.loop, self.target
        lookup = loop.run_in_executor(None, addresses, target.host, target.port, self.guard, self.resolver)
        try:
            found = await asyncio.wait_for(lookup, max(deadline - loop.time(), 0.001))
        except asyncio.TimeoutError:
            raise ConnectTimeout(f"resolving {target.host} did not finish") from None
        sock = await _open(loop, found, deadline)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls: Dict[str, Any] = {}
            if target.tls:
                left = max(deadline - loop.time(), 0.001)
                tls = {"ssl": self._tls(), "server_hostname": target.host, "ssl_handshake_timeout": left}
            try:
                _, conn = await asyncio.wait_for(loop.create_connection(_Connection, sock=sock, **tls),
                                                 max(deadline - loop.time(), 0.001))
            except asyncio.TimeoutError:
                raise ConnectTimeout("the TLS handshake did not finish") from None
        except BaseException:
            sock.close()
            raise
        return conn

    def _tls(self) -> Any:
        if self.ssl_context is None:
            import ssl

            self.ssl_context = ssl.create_default_context()  # once per AsyncSender, on its first https connection
        return self.ssl_context

    def put(self, conn: _Connection) -> None:
        if conn.closed or self._closed:
            self.discard(conn)
            return
        self._idle.append(conn)
        self._wake_one()

    def discard(self, conn: _Connection) -> None:
        conn.close()
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
            self._open -= 1

    async def exchange(self, request: bytes) -> ResponseReader:
        """Send ``request`` on a pooled connection; the ResponseReader with its answer."""
        loop = self.loop
        conn: Optional[_Connection]
        conn, reused = await self.get(loop.time() + self.timeout.connect)
        try:
            try:
                answer = await self._roundtrip(conn, request, reused)
            except Stale:
                # The server closed the kept-alive connection as we reused it: one fresh try.
                self.discard(conn)
                conn = None
                conn = await self.new(loop.time() + self.timeout.connect)
                answer = await self._roundtrip(conn, request, False)
            if answer.reusable:
                self.put(conn)
            else:
                self.discard(conn)
            conn = None
            return answer
        finally:
            if conn is not None:
                self.discard(conn)  # failed, timed out or cancelled mid-exchange: out of step

    async def _roundtrip(self, conn: _Connection, request: bytes, reused: bool) -> ResponseReader:
        loop = self.loop
        answer = ResponseReader(RESPONSE_CAP)
        waiter: "asyncio.Future[None]" = loop.create_future()
        conn.reader, conn.waiter, conn.reused = answer, waiter, reused
        timer = loop.call_at(loop.time() + self.timeout.read, conn.expire)
        try:
            if conn.closed:
                raise Stale() if reused else Closed("the server closed the connection without answering")
            conn.transport.write(request)
            await waiter
        finally:
            timer.cancel()
            conn.reader = conn.waiter = None
        return answer


def _expire_waiter(waiter: "asyncio.Future[None]", limit: int) -> None:
    if not waiter.done():
        waiter.set_exception(ConnectTimeout(f"no free connection: all {limit} in use"))


class AsyncSender:
    """Signs and POSTs JSON to one URL from asyncio code, retrying what is worth retrying.

    The :class:`~webhooklite.Sender`'s arguments and answers (a
    :class:`~webhooklite.Delivery`), with its rules: backoff with jitter,
    ``Retry-After`` as a floor (one longer than ``max_delay`` ends the
    retries), no redirects, 410 Gone reported as such, the SSRF guard
    (``block_private``), ``ssl_context``, and ``timeout`` as seconds or a
    :class:`~webhooklite.Timeout`. ``max_connections`` caps the kept-alive
    connections (more concurrent sends wait for one, under the connect budget).

    Use it on one event loop, with ``async with`` or ``await sender.close()``.
    """

    def __init__(
        self,
        url: str,
        secret: Optional[Secret] = None,
        *,
        scheme: str = "standard",
        timeout: Union[float, Timeout] = 10.0,
        retry: Optional[Retry] = None,
        headers: Optional[Mapping[str, str]] = None,
        ssl_context: Any = None,
        block_private: bool = False,
        allow_networks: Iterable[str] = (),
        resolver: Optional[Callable[[str, int], Iterable[str]]] = None,
        max_connections: int = 32,
    ) -> None:
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError(f"max_connections is a whole number of at least 1, not {max_connections!r}")
        target = Target(url, secret, scheme, headers)
        #: The URL every message is POSTed to (without the credentials it may have held).
        self.url = target.url
        #: The signing scheme name.
        self.scheme = scheme
        #: The connect and read budgets of one attempt (a number given is both).
        self.timeout = Timeout.of(timeout)
        #: The retry policy.
        self.retry = retry if retry is not None else Retry()
        #: Whether the SSRF guard is on.
        self.block_private = block_private
        #: Most connections open at once.
        self.max_connections = max_connections
        self._target = target
        self._guard = guard_for(block_private, allow_networks, resolver)
        self._resolver = resolver
        self._ssl_context = ssl_context
        self._pool: Optional[_Pool] = None

    def __repr__(self) -> str:
        return f"AsyncSender({self._target.safe_url!r}, scheme={self.scheme!r}, signed={self._target.signer is not None})"

    async def __aenter__(self) -> "AsyncSender":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the kept-alive connections (those in use close when their exchange ends)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    aclose = close

    def _pool_here(self) -> _Pool:
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is None or pool.loop is not loop:
            # Connections belong to the loop that opened them: another loop starts afresh.
            pool = self._pool = _Pool(self._target, self.timeout, self._ssl_context, self._guard, self._resolver,
                                      self.max_connections, loop)
        return pool

    def prepare(self, body: bytes, msg_id: str, event: Optional[str] = None, timestamp: Optional[int] = None) -> Dict[str, str]:
        """The headers for one attempt: content type, id, signature (fresh timestamp)."""
        ts = int(time.time()) if timestamp is None else timestamp
        headers = dict(self._target.base_headers)
        headers.update(self._target.attempt_headers(body, msg_id, event, ts))
        return headers

    async def send(self, event: str, data: Any = None, *, id: Optional[str] = None) -> Delivery:
        """Send ``event`` with ``data`` in the webhooklite envelope; return the Delivery.

        Under ``scheme="stripe"`` the envelope carries the message id as ``id``
        (Stripe signs no id header: receivers dedupe on the body's ``id``).
        """
        msg_id = id or new_message_id()
        body = encode_event(event, data, id=msg_id if self.scheme == "stripe" else None)
        return await self.deliver(body, msg_id=msg_id, event=event)

    async def post(self, payload: Any, *, id: Optional[str] = None) -> Delivery:
        """POST any JSON as is, no envelope (Slack, Discord, your own format)."""
        body = payload if isinstance(payload, bytes) else encode_json(payload)
        return await self.deliver(body, msg_id=id)

    async def deliver(
        self,
        body: bytes,
        *,
        msg_id: Optional[str] = None,
        event: Optional[str] = None,
        on_retry: Optional[Callable[[Delivery, float], None]] = None,
    ) -> Delivery:
        """Send an encoded body, retrying per ``self.retry``; return the Delivery (see ``Sender.deliver``)."""
        msg_id = msg_id or new_message_id()
        check_value("the message id", msg_id)
        if event is not None:
            check_value("the event type", event)
        start = time.monotonic()
        n = 0
        while True:
            n += 1
            d = await self._attempt(self._target.request(body, msg_id, event), Delivery(msg_id, self.url, attempts=1))
            d.attempts = n
            d.elapsed = time.monotonic() - start
            wait = next_wait(self.retry, d, self._target.safe_url)
            if wait is None:
                return d
            if on_retry is not None:
                on_retry(d, wait)
            await asyncio.sleep(wait)

    async def attempt(self, body: bytes, msg_id: str, event: Optional[str] = None) -> Delivery:
        """Make exactly one attempt (no retry); the Delivery says whether to retry."""
        return await self._attempt(self._target.request(body, msg_id, event), Delivery(msg_id, self.url, attempts=1))

    async def relay(self, body: bytes, headers: Mapping[str, str]) -> Delivery:
        """POST ``body`` once with exactly ``headers``: no signing, no retry (see ``Sender.relay``)."""
        request, msg_id = self._target.relay(body, headers)
        return await self._attempt(request, Delivery(msg_id, self.url, attempts=1))

    async def _attempt(self, request: bytes, d: Delivery) -> Delivery:
        start = time.monotonic()
        try:
            answer = await self._pool_here().exchange(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # translated at the boundary, as the Sender does
            failed(d, exc, self.timeout)
        else:
            judge(d, answer.status, answer.reason, answer.headers, answer.body)
        d.elapsed = time.monotonic() - start
        return d


async def asend(url: str, event: str, data: Any = None, *, secret: Optional[Secret] = None, **options: Any) -> Delivery:
    """Send one event and return its Delivery: ``await webhooklite.asend(url, event, data, secret=...)``.

    ``options`` are :class:`AsyncSender`'s keywords.
    """
    async with AsyncSender(url, secret, **options) as sender:
        return await sender.send(event, data)
