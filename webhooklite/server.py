"""A small threaded HTTP/1.1 server for a Receiver: ``serve()`` and ``start()``.

It speaks just what a webhook endpoint needs: POST with Content-Length or
chunked bodies, keep-alive, ``Expect: 100-continue``. Like http.server it
uses a thread per connection, but it parses requests itself (the stdlib's
email-based header parser is a third of each request's cost), caps the
number of connections, and cuts off slow or idle clients. Each answer is
written in one ``sendall``.

For production on a public port, prefer serving the Receiver (a WSGI app)
with gunicorn or waitress behind a reverse proxy.
"""
import io
import logging
import selectors
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from ._signals import until_stopped
from .headers import (
    Headers,
    is_host,
    is_token,
    origin_path,
    parse_chunk_size,
    parse_content_length,
    parse_field_section,
    parse_list,
    parse_request_line,
    remember_valid,
    split_field_line,
)
from .receiver import _BAD_LENGTH, _DUPLICATE, _IGNORED, _OK, Receiver, Response, _error

__all__ = ["WebhookServer", "serve"]

log = logging.getLogger("webhooklite")
access_log = logging.getLogger("webhooklite.access")

#: Longest request line (method, target, version), in bytes: longer is 414.
MAX_REQUEST_LINE = 8192
#: Longest header line, in bytes: longer is 431.
MAX_HEADER_LINE = 8192
#: Most header lines in one request: more is 431.
MAX_HEADERS = 100
#: Most header bytes in one request: more is 431.
MAX_HEADER_BYTES = 65536
#: After refusing a request, how long (seconds) and how much (bytes) of what the client is
#: still sending is read and thrown away before closing, so that the client reads the answer
#: instead of a connection reset (closing a socket with unread input sends a TCP RST).
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 64 * 1024 * 1024
#: Under a full ``max_connections``, a connection idle this long (seconds) waiting for its
#: next request is closed to make room for one waiting in the listen queue.
_EVICT_IDLE_AFTER = 0.5
#: A connection's state is ``[deadline, idle_since]`` (monotonic seconds): its own thread
#: writes both without a lock (a list item assignment is atomic), and the watchdog, stop()
#: and the eviction read them. _INF means no deadline (a handler is running) / not idle.
_DEADLINE, _IDLE_SINCE = 0, 1
_INF = float("inf")
#: With an inbox, a delivery's answer is sent by the inbox's writer thread once it is stored,
#: without waiting on the socket (see WebhookServer._reply_later); where the platform has no
#: MSG_DONTWAIT (Windows), the request's own thread waits for the commit and answers.
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
#: Seconds a connection waits for such an answer at most before it reads on or closes.
_ANSWER_WAIT = 60.0


class _Answer:
    """A connection's answer being written by another thread (the inbox's writer, see
    WebhookServer._reply_later): ``lock`` is held until it is written, and ``close`` says
    whether it said ``Connection: close``, so that the connection then reads nothing more."""

    __slots__ = ("lock", "close")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.close = False


class _Reject(Exception):
    """A request the server answers itself, then closes the connection."""

    def __init__(self, response: Response) -> None:
        self.response = response


#: How an answer ends its connection: closes it, keeps it (HTTP/1.1: the default), or keeps it
#: for an HTTP/1.0 client that asked, which must be told so (RFC 9112 §9.3).
_CLOSE, _KEEP, _KEEP_10 = 0, 1, 2
_CONNECTION = {_CLOSE: "Connection: close", _KEEP: None, _KEEP_10: "Connection: keep-alive"}


def _render(response: Response, mode: int) -> bytes:
    rendered = _RENDERED.get((id(response), mode))
    if rendered is not None:
        return rendered
    return _render_now(response, mode)


def _render_now(response: Response, mode: int) -> bytes:
    lines = [f"HTTP/1.1 {response.status} {response.reason}"]
    for name, value in response.headers:
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(response.body)}")
    connection = _CONNECTION[mode]
    if connection is not None:
        lines.append(connection)
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") + response.body


# The receiver's fixed answers (module constants, alive as long as the program, so their
# ids are stable) are rendered once, not on every request.
_RENDERED: Dict[Tuple[int, int], bytes] = {
    (id(r), mode): _render_now(r, mode) for r in (_OK, _DUPLICATE, _IGNORED) for mode in _CONNECTION
}


class WebhookServer:
    """Serves one Receiver over HTTP/1.1 on a real socket.

    ``port=0`` picks a free port; ``server.url`` says which. Options (the
    same keywords work for ``Receiver.serve()`` and ``Receiver.start()``):

    ``backlog`` (128)
        The kernel's listen queue.
    ``max_connections`` (512)
        Connections served at once, one thread each. Over it the server stops
        accepting: new connections wait in the listen queue (and, while they
        wait, connections idle between requests are closed to make room).
    ``idle_timeout`` (15 s)
        How long a connection may wait, silent, for its next request.
    ``request_timeout`` (30 s)
        How long one request may take to arrive, from its first byte to the
        end of its body. A slower client is disconnected (slowloris).
    ``max_request_line`` (8192 bytes, 414), ``max_header_line`` (8192 bytes,
    431), ``max_headers`` (100 lines, 431), ``max_header_bytes`` (65536, 431)
        Limits on the request head. The body's limit is ``Receiver.max_body``
        (413 before the body is read; for a chunked body, as soon as it is over).
    ``metrics_path`` (None)
        A path (e.g. ``"/metrics"``) answered to GET with ``receiver.metrics()`` and its inbox's, in
        Prometheus' text format, before any of the receiver's checks (scrapes are not counted).
    """

    def __init__(
        self,
        receiver: Receiver,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        backlog: int = 128,
        max_connections: int = 512,
        idle_timeout: float = 15.0,
        request_timeout: float = 30.0,
        max_request_line: int = MAX_REQUEST_LINE,
        max_header_line: int = MAX_HEADER_LINE,
        max_headers: int = MAX_HEADERS,
        max_header_bytes: int = MAX_HEADER_BYTES,
        metrics_path: Optional[str] = None,
    ) -> None:
        if max_connections < 1 or backlog < 0:
            raise ValueError("max_connections is at least 1 and backlog at least 0")
        if not (idle_timeout > 0 and request_timeout > 0):
            raise ValueError("idle_timeout and request_timeout are seconds, more than 0")
        if min(max_request_line, max_header_line, max_headers, max_header_bytes) < 1:
            raise ValueError("the request-head limits are at least 1")
        self.receiver = receiver
        if metrics_path is not None and (not metrics_path.startswith("/") or metrics_path == receiver.path):
            raise ValueError(f"metrics_path is a path starting with '/', other than the receiver's: {metrics_path!r}")
        #: The path answered with the metrics, or None.
        self.metrics_path = metrics_path
        #: Seconds a connection may wait, silent, for its next request.
        self.idle_timeout = idle_timeout
        #: Seconds one request may take to arrive, from its first byte to the end of its body.
        self.request_timeout = request_timeout
        #: Connections served at once (one thread each); more wait in the listen queue.
        self.max_connections = max_connections
        #: Longest request line in bytes (longer: 414).
        self.max_request_line = max_request_line
        #: Longest header line in bytes (longer: 431).
        self.max_header_line = max_header_line
        #: Most header lines (more: 431).
        self.max_headers = max_headers
        #: Most header bytes in all (more: 431).
        self.max_header_bytes = max_header_bytes
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family, backlog=backlog)
        self.socket.setblocking(False)
        self.host, self.port = self.socket.getsockname()[:2]
        self._slots = threading.BoundedSemaphore(max_connections)
        self._stopping = threading.Event()
        self._stopped = threading.Event()  # stop() has ended: the watchdog ends with it
        self._wake_r, self._wake_w = socket.socketpair()
        # Open connection -> its state, [deadline, idle_since]; the lock guards the dict's
        # membership, not the states, which each connection's thread updates on its own.
        self._conns: Dict[socket.socket, List[float]] = {}
        self._conns_lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._watchdog: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        """The URL to send webhooks to, with the receiver's path."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.receiver.path or '/'}"

    def __repr__(self) -> str:
        return f"<WebhookServer {self.url}>"

    # -- lifecycle ----------------------------------------------------------

    def serve_forever(self) -> None:
        """Accept connections until :meth:`stop`."""
        self._start_watchdog()
        sel = selectors.DefaultSelector()
        sel.register(self.socket, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                # Over max_connections we stop accepting: the kernel queues the rest,
                # and connections idling between requests make room for them.
                if not self._slots.acquire(timeout=0.1):
                    self._evict_idle()
                    continue
                accepted = False
                try:
                    for key, _ in sel.select(timeout=0.5):
                        if key.fileobj is self.socket:
                            try:
                                conn, addr = self.socket.accept()
                            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                                continue
                            except OSError as e:  # e.g. out of file descriptors: back off, keep serving
                                log.error("accept failed: %s", e)
                                time.sleep(0.1)
                                continue
                            # The connection's thread releases its slot: mark it taken *before* the
                            # thread starts, so a Ctrl-C landing in between cannot release it twice.
                            accepted = True
                            try:
                                threading.Thread(
                                    target=self._serve_connection, args=(conn, addr), daemon=True
                                ).start()
                            except RuntimeError as e:  # can't start a new thread: drop this one, keep serving
                                accepted = False
                                log.error("could not start a thread for a connection: %s", e)
                                conn.close()
                                continue
                finally:
                    if not accepted:
                        self._slots.release()
        finally:
            sel.close()

    def start(self) -> "WebhookServer":
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name=f"webhooklite:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close idle connections, wait up to ``timeout`` for requests in flight
        (and for an inbox's handlers in flight, which then finish in the background).

        Answers written meanwhile say ``Connection: close``. The watchdog keeps cutting
        requests off at ``request_timeout`` while stop() waits; at ``timeout`` every
        connection still open is closed (a handler still running finishes in its thread,
        but its answer is lost; the sender retries and gets a duplicate).
        """
        if self._stopping.is_set():
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()
        try:
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(timeout)
            self.socket.close()
            while time.monotonic() < deadline and self._open_connections(idle_only=True):
                time.sleep(0.02)
            # The deadline: close what is left, and give its threads a moment to end.
            end = time.monotonic() + 1.0
            while self._open_connections(idle_only=False) and time.monotonic() < end:
                time.sleep(0.02)
        finally:
            self._stopped.set()
            self._wake_r.close()
            self._wake_w.close()
            # An inbox's handler threads stop with the server, in what is left of the timeout.
            self.receiver._serving(False, max(0.0, deadline - time.monotonic()))

    def _open_connections(self, idle_only: bool) -> int:
        """Shut down the idle connections (all of them unless ``idle_only``); return how many are open."""
        with self._conns_lock:
            conns = list(self._conns.items())
        for conn, state in conns:
            # Wakes a connection waiting for a next request; one mid-request may finish first.
            if not idle_only or state[_IDLE_SINCE] != _INF:
                _shutdown(conn)
        return len(conns)

    close = stop

    def __enter__(self) -> "WebhookServer":
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _evict_idle(self) -> None:
        """All slots taken and someone waiting to connect: close connections idle for a while."""
        try:
            import select

            if not select.select([self.socket], [], [], 0)[0]:
                return
        except (OSError, ValueError):
            return
        cutoff = time.monotonic() - min(_EVICT_IDLE_AFTER, self.idle_timeout)
        with self._conns_lock:
            idle = [c for c, state in self._conns.items() if state[_IDLE_SINCE] < cutoff]
        for conn in idle:
            _shutdown(conn)

    # -- the watchdog: a deadline for every request ---------------------------

    def _start_watchdog(self) -> None:
        def watch() -> None:
            tick = max(0.05, min(1.0, self.request_timeout / 4, self.idle_timeout / 4))
            while not self._stopped.wait(tick):
                now = time.monotonic()
                with self._conns_lock:
                    late = [c for c, state in self._conns.items() if state[_DEADLINE] < now]
                for conn in late:
                    _shutdown(conn)

        self._watchdog = threading.Thread(target=watch, name="webhooklite-watchdog", daemon=True)
        self._watchdog.start()

    # -- one connection -------------------------------------------------------

    def _serve_connection(self, conn: socket.socket, addr: Any) -> None:
        pending = _Answer()
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Blocking, no socket timeout: the watchdog enforces every deadline by shutting
            # the socket down (which ends a blocked recv or send). A socket timeout would make
            # CPython poll() before each recv and send: two more system calls per request.
            conn.settimeout(None)
            rfile = io.BufferedReader(_Reads(conn), 65536)
            now = time.monotonic()
            state = [now + self.idle_timeout, now]  # idle: waiting for the first request
            with self._conns_lock:
                self._conns[conn] = state
            try:
                while not self._stopping.is_set():
                    if not self._one_request(conn, rfile, addr, state, pending):
                        break
            finally:
                rfile.close()
        except (OSError, ValueError):
            pass  # the client went away, or the watchdog cut it off
        except BaseException:  # SystemExit from a handler too: logged, not a silent end of this thread
            log.exception("unexpected error serving %s", addr[0] if addr else addr)
        finally:
            # An answer still being written from the inbox's thread: the socket stays open, and in
            # _conns (stop() and the watchdog see it), until it is written or cut off.
            if not _answered(pending, conn):
                with pending.lock:
                    pass  # cut off: the writer's send now fails at once
            with self._conns_lock:
                self._conns.pop(conn, None)
            try:
                conn.close()
            finally:
                self._slots.release()

    def _one_request(self, conn: socket.socket, rfile: Any, addr: Any, state: List[float], pending: _Answer) -> bool:
        """Read, answer and log one request; return whether to keep the connection.

        ``state`` is the connection's ``[deadline, idle_since]``: on entry it is idle, its
        deadline idle_timeout from when the last answer (or the connection) began. ``pending``
        says whether the last answer is still being written by the inbox's thread (see
        :meth:`_reply_later`): a next request (pipelined) waits for it, and is not read at all
        when that answer said ``Connection: close`` or did not come within _ANSWER_WAIT.
        """
        try:
            more = rfile.peek(1)
        finally:
            answered = _answered(pending, conn)
            state[_IDLE_SINCE] = _INF
        if not more or not answered or pending.close:
            return False
        # Reading: from the first byte to the end of the body (request_timeout).
        state[_DEADLINE] = time.monotonic() + self.request_timeout
        limit = self.max_request_line
        line = rfile.readline(limit + 1)
        while line in (b"\r\n", b"\n"):  # RFC 9112: ignore blank lines before a request
            line = rfile.readline(limit + 1)
        if not line:
            return False
        method = target = "-"
        head_only = linger = http10 = keep_alive = False
        try:
            if len(line) > limit:
                raise _Reject(_error(414, f"the request line is over {limit} bytes"))
            if not line.endswith(b"\n"):
                raise _Reject(_error(400, "the request ended inside its request line"))
            parsed = _REQUEST_LINES.get(line)
            if parsed is None:
                parsed = parse_request_line(line.decode("latin-1"))
                if parsed is not None and len(_REQUEST_LINES) < 64:
                    _REQUEST_LINES[line] = parsed  # a kept-alive sender repeats its request line
            if parsed is None:
                raise _Reject(_error(400, "malformed request line"))
            method, target, version = parsed
            head_only = method == "HEAD"  # answered without a body, whatever the answer (RFC 9110 §9.3.2)
            if version[0] != "1":
                raise _Reject(_error(505, "this server speaks HTTP/1.1 and HTTP/1.0"))
            http10 = version == "1.0"
            h = self._read_headers(rfile)
            fields = h._d  # lower-case names: plain dict lookups, not Headers.get
            host = fields.get("host")
            if host is None:
                if not http10:  # RFC 9112 §3.2: a 1.1 request without Host is 400
                    raise _Reject(_error(400, "an HTTP/1.1 request needs a Host header"))
            elif host not in _HOSTS and not remember_valid(_HOSTS, host, is_host, 64):
                raise _Reject(_error(400, "the Host header is not a valid host[:port]"))
            connection = fields.get("connection")
            if connection is None:
                keep_alive = not http10
            else:
                options = [o.lower() for o in parse_list(connection)]
                keep_alive = "close" not in options and (not http10 or "keep-alive" in options)
            length = self._body_length(fields)
            if length is None and http10:
                # RFC 9112 §6.1: Transfer-Encoding in 1.0 is faulty framing; close after answering.
                keep_alive = False
            response = self._metrics(method, target) or self.receiver.check(method, origin_path(target), length)
            if response is not None:
                # Refused before the body: close unless there is no body to skip.
                if length != 0:
                    keep_alive, linger = False, True
            else:
                # Never a 1xx to an HTTP/1.0 client (RFC 9110 §10.1.1, §15.2).
                if not http10 and fields.get("expect", "").lower() == "100-continue":
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                if length is None:
                    body = self._read_chunked(rfile)
                else:
                    body = rfile.read(length) if length else b""
                    if len(body) < length:
                        return False  # the client went away mid-body
                # Handling: the handlers take what they take; the answer's write has idle_timeout.
                state[_DEADLINE] = _INF
                try:
                    if self.receiver.inbox is not None and _DONTWAIT:
                        if keep_alive and self._stopping.is_set():
                            keep_alive = False
                        later = self._reply_later(conn, addr, state, pending, method, target, http10, keep_alive)
                        pending.lock.acquire()  # before: the writer may answer before _answer returns
                        try:
                            answer = self.receiver._answer(h, body, later)
                        except BaseException:
                            pending.lock.release()  # nothing was queued: answered here (500)
                            raise
                        if answer is None:
                            return keep_alive  # stored in the inbox: answered from its thread
                        pending.lock.release()  # answered here after all (a bad signature, no handler...)
                        response = answer
                    else:
                        response = self.receiver.process(h, body)
                except Exception:
                    # A store or the receiver itself failed: the details go to the log only.
                    log.exception("error handling %s %s", method, _printable(target))
                    response, keep_alive = _INTERNAL_ERROR, False
        except _Reject as r:
            response, keep_alive, linger = r.response, False, True
        if keep_alive and self._stopping.is_set():
            keep_alive = False  # stopping: say so, then close
        now = time.monotonic()
        state[_DEADLINE] = now + self.idle_timeout  # the answer's write, then the wait for the next request
        data = _render(response, (_KEEP_10 if http10 else _KEEP) if keep_alive else _CLOSE)
        conn.sendall(data[: len(data) - len(response.body)] if head_only else data)
        _log_answer(addr, method, target, response)
        if linger:
            self._linger(conn, rfile, state)
        state[_IDLE_SINCE] = now  # answered: idle (stop() may close it) until the next request's first byte
        return keep_alive

    def _reply_later(self, conn: socket.socket, addr: Any, state: List[float], pending: _Answer, method: str,
                     target: str, http10: bool, keep_alive: bool) -> Any:
        """The ``reply`` with which the inbox's writer thread answers a delivery once it is stored.

        The writer sends it without waiting (MSG_DONTWAIT) and releases ``pending``; a client that
        does not read (its socket buffer full) gets the rest from a thread of its own, so it can
        never hold up the writer, and with it every other delivery.
        """
        def reply(response: Response) -> None:
            rest = b""
            try:
                keep = keep_alive and not self._stopping.is_set()
                pending.close = not keep  # then the connection reads no further request
                data = _render(response, (_KEEP_10 if http10 else _KEEP) if keep else _CLOSE)
                state[_DEADLINE] = time.monotonic() + self.idle_timeout  # the answer's write, then the next request
                try:
                    sent = conn.send(data, _DONTWAIT)
                except BlockingIOError:
                    sent = 0
                rest = data[sent:]
                if rest:
                    threading.Thread(target=finish, args=(rest, response), daemon=True).start()
                    return
                _log_answer(addr, method, target, response)
            except (OSError, RuntimeError):
                rest = b""  # the client went away (or no thread could start: cut it off); its thread ends it
                _shutdown(conn)
            finally:
                if not rest:
                    state[_IDLE_SINCE] = time.monotonic()
                    pending.lock.release()

        def finish(rest: bytes, response: Response) -> None:
            try:
                conn.sendall(rest)  # the watchdog cuts it off at idle_timeout
                _log_answer(addr, method, target, response)
            except OSError:
                pass
            finally:
                state[_IDLE_SINCE] = time.monotonic()
                pending.lock.release()

        return reply

    def _metrics(self, method: str, target: str) -> Optional[Response]:
        """The answer to a request for ``metrics_path`` (see ``metrics.answer``), or None for any other path."""
        if self.metrics_path is None or origin_path(target).split("?", 1)[0] != self.metrics_path:
            return None
        from .metrics import answer

        response: Response = answer(self.receiver, method)
        return response

    def _linger(self, conn: socket.socket, rfile: Any, state: List[float]) -> None:
        """Half-close, then read and drop what the client is still sending (bounded).

        Closing with unread input makes the kernel send a reset, which can destroy
        the answer before the client reads it; this is nginx's "lingering close".
        """
        try:
            conn.shutdown(socket.SHUT_WR)
            seconds = min(_LINGER_SECONDS, self.request_timeout)
            end = time.monotonic() + seconds
            state[_DEADLINE] = end
            left = _LINGER_BYTES
            while left > 0:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    break
                conn.settimeout(remaining)
                data = rfile.read1(min(left, 65536))
                if not data:
                    break
                left -= len(data)
        except (OSError, ValueError):
            pass

    def _read_headers(self, rfile: Any) -> Headers:
        max_line, max_count, max_bytes = self.max_header_line, self.max_headers, self.max_header_bytes
        fast = self._read_plain_headers(rfile, max_line, max_count, max_bytes)
        if fast is not None:
            return fast
        headers: Dict[str, str] = {}
        total = count = 0
        while True:
            line = rfile.readline(max_line + 1)
            if line in (b"\r\n", b"\n"):
                return Headers._from_lower(headers)
            if len(line) > max_line:
                raise _Reject(_error(431, f"a header line is over {max_line} bytes"))
            if not line.endswith(b"\n"):
                raise _Reject(_error(400, "the request ended inside its headers"))
            count += 1
            total += len(line)
            if count > max_count or total > max_bytes:
                raise _Reject(_error(431, f"over {max_count} headers or {max_bytes} header bytes"))
            # A bare LF may end a line (RFC 9112 §2.2); a CR anywhere else is refused below.
            field = split_field_line(line.decode("latin-1")[: -2 if line.endswith(b"\r\n") else -1])
            if field is None:
                raise _Reject(_error(400, _malformed(line)))
            key, text = field[0].lower(), field[1]
            if key in headers:
                if key == "host":  # RFC 9112 §3.2: more than one Host line is 400
                    raise _Reject(_error(400, "more than one Host header"))
                headers[key] += ", " + text
            else:
                headers[key] = text

    @staticmethod
    def _read_plain_headers(rfile: Any, max_line: int, max_count: int, max_bytes: int) -> Optional[Headers]:
        """The fast path of :meth:`_read_headers`: the whole head parsed at once, or None.

        It takes a head that is already buffered and plain: every line a valid field line
        ended by CRLF (:func:`~webhooklite.headers.parse_field_section` checks them all at
        once), within every limit, one Host at most. That is every ordinary request; it gives
        the same Headers the line-by-line path would. Anything else (or a head still arriving)
        consumes nothing and returns None, and the line-by-line path reads it and says what is wrong.
        """
        buf = rfile.peek(1)
        end = buf.find(b"\r\n\r\n")
        if end <= 0 or end + 4 > max_bytes:
            return None
        text = buf[:end].decode("latin-1")
        if end + 2 > max_line and max(map(len, text.split("\r\n"))) + 2 > max_line:
            return None
        headers = parse_field_section(text, max_count)
        if headers is None:
            return None
        rfile.read(end + 4)
        return Headers._from_lower(headers)

    def _body_length(self, fields: Dict[str, str]) -> Optional[int]:
        """Content-Length as an int; None for a chunked body (RFC 9112 §6). ``fields``: lower-case names."""
        te = fields.get("transfer-encoding")
        cl = fields.get("content-length")
        if te is not None:
            if cl is not None:
                raise _Reject(_error(400, "both Transfer-Encoding and Content-Length"))
            codings = [c.lower() for c in parse_list(te)]
            if not codings or not all(map(is_token, codings)):
                raise _Reject(_error(400, "malformed Transfer-Encoding"))
            if codings[-1] != "chunked" or codings.count("chunked") > 1:
                # §6.3: chunked not last (once), the body's length cannot be known: 400, close.
                raise _Reject(_error(400, "the chunked transfer coding must come last, once"))
            if len(codings) > 1:
                raise _Reject(_error(501, "only the chunked transfer coding is supported"))
            return None
        if cl is None:
            return 0
        length = parse_content_length(cl)
        if length is None:
            raise _Reject(_BAD_LENGTH)
        return length

    def _read_chunked(self, rfile: Any) -> bytes:
        limit = self.receiver.max_body
        chunks: List[bytes] = []
        size = 0
        while True:
            line = rfile.readline(1026)
            # Hex digits only (int(..., 16) would also take "0x", "_", "+"), CRLF, never a bare LF.
            n = parse_chunk_size(line.decode("latin-1"))
            if n is None:
                raise _Reject(_error(400, "malformed chunk size line"))
            if n == 0:
                break
            size += n
            if size > limit:
                raise _Reject(_error(413, f"the body is over the {limit}-byte limit"))
            chunk = rfile.read(n)
            if len(chunk) < n or rfile.read(2) != b"\r\n":
                raise _Reject(_error(400, "malformed chunk"))
            chunks.append(chunk)
        # Trailer fields, if any (each a valid field line, dropped), up to the blank line.
        for _ in range(self.max_headers + 1):
            line = rfile.readline(self.max_header_line + 1)
            if line == b"\r\n":
                return b"".join(chunks)
            if not line.endswith(b"\r\n") or split_field_line(line[:-2].decode("latin-1")) is None:
                break
        raise _Reject(_error(400, "malformed chunked trailer"))


# Request lines and Host values seen valid, up to 64 of each: a sender repeats them on
# every request, and the grammar's regular expressions are a microsecond each.
_REQUEST_LINES: Dict[bytes, Tuple[str, str, str]] = {}
_HOSTS: Dict[str, bool] = {}


class _Reads(io.RawIOBase):
    """What a connection's buffered reader reads from: the socket's own ``recv_into``, without
    ``socket.makefile``'s Python layer around each read (its timeout handling, which a blocking
    socket with no timeout never needs: the watchdog ends a stalled read by shutting the socket down).
    Closing it leaves the socket open."""

    def __init__(self, conn: socket.socket) -> None:
        self.readinto = conn.recv_into  # type: ignore[method-assign]

    def readable(self) -> bool:
        return True


def _malformed(line: bytes) -> str:
    """What is wrong with a header line the grammar refused, in a few words."""
    if line[:1] in (b" ", b"\t"):
        return "a header line starts with white space (obs-fold is not accepted)"
    name, sep, _ = line.partition(b":")
    if not sep:
        return "malformed header line (no colon)"
    if not is_token(name.decode("latin-1")):
        return "a header name is not a token (RFC 9110 5.6.2)"
    return "a header value holds a CR, LF, NUL, VT or FF"


_INTERNAL_ERROR = _error(500, "internal error; the sender should retry")


def _printable(text: str) -> str:
    """``text`` cut to 200 characters, control characters escaped (no log injection)."""
    text = text[:200]
    if text.isprintable():
        return text
    from ._text import escape

    return escape(text)


def _answered(pending: _Answer, conn: socket.socket) -> bool:
    """Wait until the inbox's thread has written this connection's last answer, if it has not yet;
    False when it has not within _ANSWER_WAIT: the connection is then cut off (and its answer with it)."""
    if not pending.lock.locked():
        return True
    if pending.lock.acquire(timeout=_ANSWER_WAIT):
        pending.lock.release()
        return True
    _shutdown(conn)
    return False


def _log_answer(addr: Any, method: str, target: str, response: Response) -> None:
    if access_log.isEnabledFor(logging.INFO):
        access_log.info(
            '%s "%s %s" %d %d', addr[0], _printable(method), _printable(target), response.status, len(response.body)
        )


def _shutdown(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def serve(receiver: Receiver, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
    """Serve ``receiver`` until Ctrl-C or SIGTERM; then return normally."""
    server = WebhookServer(receiver, host, port, **options)
    log.info("webhooklite listening on %s", server.url)
    try:
        receiver._serving(True)  # the server's stop() stops them
        with until_stopped():
            server.serve_forever()
    finally:
        server.stop()
        log.info("webhooklite stopped")
