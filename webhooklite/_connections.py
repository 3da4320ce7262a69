"""The thread Sender's connections: open (every address, under the connect budget), keep, reuse, exchange.

Loaded by the first Sender, not by ``import webhooklite``. A connection is a
plain socket (TLS-wrapped for https): each request is written with one
``sendall`` and its answer read with ``recv`` into the sans-IO
``_response.ResponseReader``, against the read budget's deadline, however
slowly it trickles in. No http.client: it has no connect budget across a
host's addresses and no deadline for a whole response, and reaching into it
for either took private attributes.
"""
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from ._response import ResponseReader
from ._wire import RESPONSE_CAP, STAGGER, Closed, ConnectTimeout, ReadTimeout, Stale, Target, Timeout
from .guard import addresses

__all__ = ["Pool"]

#: Idle connections a Sender keeps open for reuse.
_MAX_IDLE = 32
#: An idle connection back in the pool for less than this (seconds) is reused without
#: first checking (a system call) that the server has not closed it; a reuse that finds
#: it closed is retried once on a fresh connection anyway (see ``Pool.exchange``).
_FRESH_IDLE = 0.25


def _open(addresses: List[Tuple[int, Any]], deadline: float) -> Any:
    """A TCP socket connected to the first of ``addresses`` that answers before ``deadline``.

    One address: a plain connect. Several: a new attempt every ``STAGGER`` seconds (at
    once when one fails), all racing, the first to connect wins (RFC 8305, "Happy
    Eyeballs"): an address that drops SYNs costs 250 ms, not the whole budget.
    """
    if len(addresses) == 1:
        family, sockaddr = addresses[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.connect(sockaddr)
        except socket.timeout:
            sock.close()
            raise ConnectTimeout(f"no answer from {sockaddr[0]}") from None
        except BaseException:
            sock.close()
            raise
        return sock
    import errno
    import os
    import selectors

    pending: Dict[Any, Any] = {}
    errors: List[OSError] = []
    selector = selectors.DefaultSelector()
    i, next_at = 0, 0.0
    try:
        while True:
            now = time.monotonic()
            if i < len(addresses) and (now >= next_at or not pending):
                family, sockaddr = addresses[i]
                i += 1
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                err = sock.connect_ex(sockaddr)
                if err == 0:
                    sock.setblocking(True)
                    return sock
                if err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
                    pending[sock] = sockaddr
                    selector.register(sock, selectors.EVENT_WRITE, sock)
                    next_at = now + STAGGER
                else:
                    errors.append(OSError(err, os.strerror(err)))
                    sock.close()
                continue
            if not pending:
                raise errors[-1]
            if now >= deadline:
                raise ConnectTimeout("no answer from " + ", ".join(str(a[0]) for a in pending.values()))
            wait = deadline - now if i >= len(addresses) else min(deadline, next_at) - now
            for key, _ in selector.select(max(wait, 0.0)):
                sock = key.data
                selector.unregister(sock)
                del pending[sock]
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err == 0:
                    sock.setblocking(True)
                    return sock
                errors.append(OSError(err, os.strerror(err)))
                sock.close()
                next_at = 0.0  # one failed: try the next address at once
    finally:
        selector.close()
        for sock in pending:
            sock.close()


def _looks_alive(sock: Any) -> bool:
    """True when an idle connection has nothing to read: the server has not closed it (or spoken out of turn)."""
    import select

    try:
        if hasattr(select, "poll"):
            p = select.poll()
            p.register(sock, select.POLLIN)
            return not p.poll(0)
        return not select.select([sock], [], [], 0)[0]
    except (OSError, ValueError):
        return False


class _Connection:
    """One socket to the origin, and the timeout it is set to (changing it is a system call)."""

    __slots__ = ("sock", "timeout", "idle_since")

    def __init__(self, sock: Any, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self.idle_since = 0.0

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Pool:
    """Idle HTTP/1.1 connections to one origin, shared by threads; opens new ones."""

    def __init__(self, target: Target, timeout: Timeout, ssl_context: Any, guard: Any,
                 resolver: Optional[Callable[[str, int], Iterable[str]]]) -> None:
        self.target = target
        self.timeout = timeout
        self.ssl_context = ssl_context
        #: The SSRF guard (``block_private=True``): resolves and checks the addresses.
        self.guard = guard
        self.resolver = resolver
        self._idle: List[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def new(self) -> _Connection:
        """A new connection: TCP (every address, under the connect budget), then TLS."""
        deadline = time.monotonic() + self.timeout.connect
        sock = _open(addresses(self.target.host, self.target.port, self.guard, self.resolver), deadline)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.target.tls:
                ctx = self._tls()
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                try:
                    # The connection may go to a checked address; TLS verifies the URL's host name.
                    sock = ctx.wrap_socket(sock, server_hostname=self.target.host)
                except socket.timeout:
                    raise ConnectTimeout("the TLS handshake did not finish") from None
            sock.settimeout(self.timeout.read)
        except BaseException:
            sock.close()
            raise
        return _Connection(sock, self.timeout.read)

    def _tls(self) -> Any:
        """The SSL context: the caller's, or the system default built once (loading CAs takes milliseconds)."""
        if self.ssl_context is None:
            import ssl

            with self._lock:
                if self.ssl_context is None:
                    self.ssl_context = ssl.create_default_context()
        return self.ssl_context

    def get(self) -> Tuple[_Connection, bool]:
        """A connection and whether it was reused (an idle one that still looks alive)."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self.new(), False
            if time.monotonic() - conn.idle_since < _FRESH_IDLE or _looks_alive(conn.sock):
                return conn, True
            conn.close()

    def put(self, conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        with self._lock:
            if not self._closed and len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def exchange(self, request: bytes) -> Any:
        """Send ``request`` on a pooled connection; the ResponseReader with the answer."""
        conn: Optional[_Connection]
        conn, reused = self.get()
        try:
            try:
                answer = self._roundtrip(conn, request, reused)
            except Stale:
                # The server closed the kept-alive connection as we reused it: one fresh try.
                conn.close()
                conn = self.new()
                answer = self._roundtrip(conn, request, False)
            if answer.reusable:
                if conn.timeout != self.timeout.read:
                    conn.sock.settimeout(self.timeout.read)
                    conn.timeout = self.timeout.read
                self.put(conn)
            else:
                conn.close()
            conn = None
            return answer
        finally:
            if conn is not None:
                conn.close()

    def _roundtrip(self, conn: _Connection, request: bytes, reused: bool) -> Any:
        read = self.timeout.read
        deadline = time.monotonic() + read
        sock = conn.sock
        try:
            sock.sendall(request)
        except socket.timeout:
            raise ReadTimeout("timed out") from None
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            if reused:
                raise Stale() from None
            raise
        answer = ResponseReader(RESPONSE_CAP)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ReadTimeout("timed out")
            if left < conn.timeout - 0.01:  # the deadline is nearer than the socket's timeout
                sock.settimeout(left)
                conn.timeout = left
            try:
                data = sock.recv(65536)
            except socket.timeout:
                raise ReadTimeout("timed out") from None
            except (ConnectionResetError, ConnectionAbortedError):
                if reused and not answer.started:
                    raise Stale() from None
                raise
            if not data:
                if reused and not answer.started:
                    raise Stale()
                if answer.feed_eof():
                    return answer
                raise Closed("the server closed the connection " + (
                    "before its answer ended" if answer.started else "without answering"))
            if answer.feed(data):
                return answer
