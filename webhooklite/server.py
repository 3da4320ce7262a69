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
import logging
import selectors
import signal
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from .headers import Headers
from .receiver import Receiver, Response, _error

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


class _Reject(Exception):
    """A request the server answers itself, then closes the connection."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _render(response: Response, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {response.status} {response.reason}"]
    for name, value in response.headers:
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(response.body)}")
    if not keep_alive:
        lines.append("Connection: close")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") + response.body


class WebhookServer:
    """Serves one Receiver over HTTP/1.1 on a real socket.

    ``port=0`` picks a free port; ``server.url`` says which. Options:
    ``backlog`` (listen queue, 128), ``max_connections`` (open connections
    served at once, 512; more wait in the listen queue), ``idle_timeout``
    (seconds a kept-alive connection may sit idle, 15), ``request_timeout``
    (seconds to send one whole request, 30).
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
    ) -> None:
        self.receiver = receiver
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family, backlog=backlog)
        self.socket.setblocking(False)
        self.host, self.port = self.socket.getsockname()[:2]
        self._slots = threading.BoundedSemaphore(max_connections)
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._conns: Dict[socket.socket, float] = {}  # open connection -> deadline
        self._conns_lock = threading.Lock()
        self._idle: set = set()  # connections waiting for their next request
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
                # Over max_connections we stop accepting: the kernel queues the rest.
                if not self._slots.acquire(timeout=0.25):
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
                            accepted = True
                            threading.Thread(
                                target=self._serve_connection, args=(conn, addr), daemon=True
                            ).start()
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
        """Stop accepting, close idle connections, wait up to ``timeout`` for requests in flight."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.socket.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._conns_lock:
                open_conns = list(self._conns)
            if not open_conns:
                break
            for conn in open_conns:
                # Wakes connections waiting for a next request; one mid-request finishes first.
                if conn in self._idle:
                    _shutdown(conn)
            time.sleep(0.02)
        self._wake_r.close()
        self._wake_w.close()

    close = stop

    def __enter__(self) -> "WebhookServer":
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- the watchdog: a deadline for every request ---------------------------

    def _start_watchdog(self) -> None:
        def watch() -> None:
            tick = max(0.05, min(1.0, self.request_timeout / 4, self.idle_timeout / 4))
            while not self._stopping.wait(tick):
                now = time.monotonic()
                with self._conns_lock:
                    late = [c for c, deadline in self._conns.items() if deadline < now]
                for conn in late:
                    _shutdown(conn)

        self._watchdog = threading.Thread(target=watch, name="webhooklite-watchdog", daemon=True)
        self._watchdog.start()

    # -- one connection -------------------------------------------------------

    def _serve_connection(self, conn: socket.socket, addr: Any) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(self.idle_timeout)
            rfile = conn.makefile("rb", buffering=65536)
            with self._conns_lock:
                self._conns[conn] = time.monotonic() + self.request_timeout + self.idle_timeout
            try:
                while not self._stopping.is_set():
                    with self._conns_lock:
                        self._conns[conn] = time.monotonic() + self.idle_timeout + self.request_timeout
                    if not self._one_request(conn, rfile, addr):
                        break
            finally:
                rfile.close()
        except (OSError, ValueError):
            pass  # the client went away, or the watchdog cut it off
        except Exception:
            log.exception("unexpected error serving %s", addr)
        finally:
            with self._conns_lock:
                self._conns.pop(conn, None)
            self._idle.discard(conn)
            try:
                conn.close()
            finally:
                self._slots.release()

    def _one_request(self, conn: socket.socket, rfile: Any, addr: Any) -> bool:
        """Read, answer and log one request; return whether to keep the connection."""
        self._idle.add(conn)
        try:
            line = rfile.readline(MAX_REQUEST_LINE + 1)
            while line in (b"\r\n", b"\n"):  # RFC 9112: ignore blank lines before a request
                line = rfile.readline(MAX_REQUEST_LINE + 1)
        finally:
            self._idle.discard(conn)
        if not line:
            return False
        method = path = "-"
        try:
            if len(line) > MAX_REQUEST_LINE:
                raise _Reject(_error(414, f"the request line is over {MAX_REQUEST_LINE} bytes"))
            parts = line.split()
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
                raise _Reject(_error(400, "malformed request line"))
            method, path = parts[0].decode("latin-1"), parts[1].decode("latin-1")
            http10 = parts[2] == b"HTTP/1.0"
            h = self._read_headers(rfile)
            connection = h.get("connection", "").lower()
            keep_alive = "keep-alive" in connection if http10 else "close" not in connection
            length = self._body_length(h)
            response = self.receiver.check(method, path, length)
            if response is not None:
                # Refused before the body: close unless there is no body to skip.
                keep_alive = keep_alive and length == 0
            else:
                if h.get("expect", "").lower() == "100-continue":
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                if length is None:
                    body = self._read_chunked(rfile)
                else:
                    body = rfile.read(length) if length else b""
                    if len(body) < length:
                        return False  # the client went away mid-body
                response = self.receiver.process(h, body)
        except _Reject as r:
            response, keep_alive = r.response, False
        conn.sendall(_render(response, keep_alive))
        if access_log.isEnabledFor(logging.INFO):
            access_log.info('%s "%s %s" %d %d', addr[0], method, path[:200], response.status, len(response.body))
        return keep_alive

    @staticmethod
    def _read_headers(rfile: Any) -> Headers:
        headers: Dict[str, str] = {}
        total = count = 0
        while True:
            line = rfile.readline(MAX_HEADER_LINE + 1)
            if line in (b"\r\n", b"\n"):
                return Headers._from_lower(headers)
            if not line:
                raise _Reject(_error(400, "the request ended inside its headers"))
            if len(line) > MAX_HEADER_LINE:
                raise _Reject(_error(431, f"a header line is over {MAX_HEADER_LINE} bytes"))
            count += 1
            total += len(line)
            if count > MAX_HEADERS or total > MAX_HEADER_BYTES:
                raise _Reject(_error(431, f"over {MAX_HEADERS} headers or {MAX_HEADER_BYTES} header bytes"))
            name, sep, value = line.partition(b":")
            if not sep or not name or name[-1:] in b" \t" or name[:1] in b" \t":
                raise _Reject(_error(400, "malformed header line"))
            key = name.decode("latin-1").lower()
            text = value.strip().decode("latin-1")
            if key in headers:
                headers[key] += ", " + text
            else:
                headers[key] = text

    def _body_length(self, h: Headers) -> Optional[int]:
        """Content-Length as an int; None for a chunked body."""
        te = h.get("transfer-encoding")
        cl = h.get("content-length")
        if te is not None:
            if cl is not None:
                raise _Reject(_error(400, "both Transfer-Encoding and Content-Length"))
            if te.lower().replace(" ", "") != "chunked":
                raise _Reject(_error(501, "only the chunked transfer coding is supported"))
            return None
        if cl is None:
            return 0
        values = {v.strip() for v in cl.split(",")}
        if len(values) != 1:
            raise _Reject(_error(400, "conflicting Content-Length values"))
        text = values.pop()
        if not text.isdigit() or not text.isascii() or len(text) > 18:
            raise _Reject(_error(400, "Content-Length is not a number"))
        return int(text)

    def _read_chunked(self, rfile: Any) -> bytes:
        limit = self.receiver.max_body
        chunks: List[bytes] = []
        size = 0
        while True:
            line = rfile.readline(1026)
            if not line.endswith(b"\n"):
                raise _Reject(_error(400, "malformed chunk size line"))
            text = line.split(b";", 1)[0].strip()
            try:
                n = int(text, 16)
                if not text or n < 0 or text.startswith((b"-", b"+", b"0x", b"0X")):
                    raise ValueError
            except ValueError:
                raise _Reject(_error(400, "malformed chunk size")) from None
            if n == 0:
                break
            size += n
            if size > limit:
                raise _Reject(_error(413, f"the body is over the {limit}-byte limit"))
            chunk = rfile.read(n)
            if len(chunk) < n or rfile.read(2) not in (b"\r\n",):
                raise _Reject(_error(400, "malformed chunk"))
            chunks.append(chunk)
        # Trailer fields, if any, up to the blank line.
        for _ in range(MAX_HEADERS + 1):
            line = rfile.readline(MAX_HEADER_LINE + 1)
            if line in (b"\r\n", b"\n"):
                return b"".join(chunks)
            if not line or len(line) > MAX_HEADER_LINE:
                break
        raise _Reject(_error(400, "malformed chunked trailer"))


def _shutdown(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def serve(receiver: Receiver, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
    """Serve ``receiver`` until Ctrl-C or SIGTERM; then return normally."""
    server = WebhookServer(receiver, host, port, **options)
    log.info("webhooklite listening on %s", server.url)
    previous = None
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        def on_term(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, on_term)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if in_main:
            signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
        log.info("webhooklite stopped")
