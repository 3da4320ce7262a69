"""Sending: Sender, Delivery and Retry over http.client, with kept-alive connections.

The request is built purely (:meth:`Sender.prepare`), then sent. One
``webhook-id`` for every attempt of a message; a fresh timestamp and
signature on each. http.client (which urllib is built on) is used directly:
urllib's ``urlopen`` sends ``Connection: close`` on every request, so it
cannot reuse a connection.
"""
import datetime
import functools
import io
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from . import __version__, _lazylog
from .errors import DeliveryError
from .events import encode_event, encode_json
from .headers import check_header_value, is_field_value, is_token, parse_uint
from .signing import SCHEMES, Secret, Signer, new_message_id

__all__ = ["Sender", "Delivery", "Retry", "RETRY_STATUSES", "send"]

log = _lazylog.getLogger("webhooklite")  # logging is imported when first used

#: Statuses worth another try; every other 4xx is final.
#: 409 too: a webhooklite receiver answers 409 while the same message id is being
#: handled by another worker, and asks for a retry (DESIGN.md's list omits it).
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
#: How much of a response body a Delivery keeps (and reads at most).
RESPONSE_CAP = 64 * 1024
#: Idle connections a Sender keeps open for reuse.
_MAX_IDLE = 32
#: An idle connection back in the pool for less than this (seconds) is reused without
#: first checking (a system call) that the server has not closed it; a reuse that finds
#: it closed is retried once on a fresh connection anyway (see ``_exchange``).
_FRESH_IDLE = 0.25
#: Headers a Sender sets per attempt (or http.client per request): not for ``headers=``.
_OWN_HEADERS = frozenset(
    {"webhook-id", "webhook-timestamp", "webhook-signature", "x-hub-signature-256", "stripe-signature",
     "x-github-event", "x-github-delivery", "content-length", "transfer-encoding"}
)


def _parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    seconds = parse_uint(value)
    if seconds is not None:
        return float(seconds)
    try:
        import email.utils  # only for an HTTP-date Retry-After: `import webhooklite` stays light

        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Retry:
    """When and how often to try again.

    ``attempts`` counts every try including the first (``Retry(attempts=1)``:
    no retry). The n-th wait is ``min(max_delay, backoff * 2**(n-1))``
    ± ``jitter`` (a fraction: 0.2 is ±20%), and at least the answer's
    ``Retry-After`` (itself capped at ``max_delay``).
    """

    __slots__ = ("attempts", "backoff", "max_delay", "jitter")

    def __init__(self, attempts: int = 3, backoff: float = 0.5, max_delay: float = 30.0, jitter: float = 0.2) -> None:
        if attempts < 1:
            raise ValueError("attempts counts the first try too: it is at least 1")
        if backoff < 0 or max_delay < 0 or not 0 <= jitter <= 1:
            raise ValueError("backoff and max_delay are >= 0; jitter is a fraction from 0 to 1")
        self.attempts = attempts
        self.backoff = backoff
        self.max_delay = max_delay
        self.jitter = jitter

    def delay(self, n: int, retry_after: Optional[float] = None) -> float:
        """Seconds to wait before retry ``n`` (1 is the wait after the first attempt)."""
        base = min(self.max_delay, self.backoff * 2 ** (n - 1))
        if self.jitter:
            import random

            base *= 1 + random.uniform(-self.jitter, self.jitter)
        if retry_after is not None:
            base = max(base, min(retry_after, self.max_delay))
        return max(0.0, base)

    def __repr__(self) -> str:
        return (
            f"Retry(attempts={self.attempts}, backoff={self.backoff}, "
            f"max_delay={self.max_delay}, jitter={self.jitter})"
        )


class Delivery:
    """What happened to one message: the outcome of its last attempt, and how many there were."""

    __slots__ = ("id", "url", "ok", "status", "attempts", "elapsed", "response_body", "error", "retry_after", "retryable")

    def __init__(
        self,
        id: str,
        url: str,
        ok: bool = False,
        status: Optional[int] = None,
        attempts: int = 0,
        elapsed: float = 0.0,
        response_body: bytes = b"",
        error: Optional[str] = None,
        retry_after: Optional[float] = None,
        retryable: bool = False,
    ) -> None:
        #: The message id (``webhook-id``), the same on every attempt.
        self.id = id
        #: Where it was sent.
        self.url = url
        #: True when the last answer was 2xx.
        self.ok = ok
        #: The last HTTP status, or None when no answer came.
        self.status = status
        #: How many attempts were made (retries included).
        self.attempts = attempts
        #: Seconds from the first attempt to the end of the last.
        self.elapsed = elapsed
        #: The last response's body, at most 64 KiB of it.
        self.response_body = response_body
        #: Why it failed, in words; None when ok.
        self.error = error
        #: Seconds the last answer asked us to wait (``Retry-After``), if any.
        self.retry_after = retry_after
        #: Whether the last failure is worth another try (connection error, 5xx, 429...).
        self.retryable = retryable

    def raise_for_status(self) -> "Delivery":
        """Raise DeliveryError unless the delivery got a 2xx; return self otherwise."""
        if not self.ok:
            raise DeliveryError(f"delivery {self.id} failed after {self.attempts} attempt(s): {self.error}", self)
        return self

    def __repr__(self) -> str:
        return (
            f"<Delivery {self.id} ok={self.ok} status={self.status} "
            f"attempts={self.attempts} elapsed={self.elapsed:.3f}s"
            + (f" error={self.error!r}" if self.error else "")
            + ">"
        )


def _send_output_once(conn: Any, message_body: Any = None, encode_chunked: bool = False) -> None:
    """http.client's ``_send_output``, but the head and a bytes body leave in one write.

    The stock one writes them apart: one system call more per request (two, with a
    socket timeout, which polls before each write). Anything else goes the stock way.
    """
    if isinstance(message_body, bytes) and not encode_chunked:
        conn._buffer.extend((b"", message_body))
        data = b"\r\n".join(conn._buffer)
        del conn._buffer[:]
        conn.send(data)
    else:
        type(conn)._send_output(conn, message_body, encode_chunked)


class _Pool:
    """Idle HTTP/1.1 connections to one origin, shared by threads."""

    def __init__(
        self, scheme: str, host: str, port: int, timeout: float, ssl_context: Any, guard: Any = None
    ) -> None:
        self.scheme, self.host, self.port = scheme, host, port
        self.timeout = timeout
        self.ssl_context = ssl_context
        #: The SSRF guard (``block_private=True``): resolves, checks and connects.
        self.guard = guard
        self._idle: List[Tuple[Any, float]] = []  # (connection, when it went idle)
        self._lock = threading.Lock()
        self._closed = False

    def _new(self) -> Any:
        import http.client  # imported on first use: `import webhooklite` stays light
        import socket

        if self.scheme == "https":
            import ssl

            ctx = self.ssl_context or ssl.create_default_context()
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        if self.guard is not None:
            # Connect to the address the guard checked; TLS still verifies the URL's host name.
            conn._create_connection = self.guard.connect
        conn._send_output = functools.partial(_send_output_once, conn)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def get(self) -> Tuple[Any, bool]:
        """A connection and whether it was reused (an idle one that still looks alive)."""
        while True:
            with self._lock:
                conn, since = self._idle.pop() if self._idle else (None, 0.0)
            if conn is None:
                return self._new(), False
            sock = conn.sock
            if sock is not None and time.monotonic() - since < _FRESH_IDLE:
                return conn, True
            try:
                # An idle connection with something to read has been closed (or spoke
                # out of turn) by the server: drop it rather than fail a request on it.
                import select

                readable = sock is None or select.select([sock], [], [], 0)[0]
            except (OSError, ValueError):
                readable = True
            if not readable:
                return conn, True
            conn.close()

    def put(self, conn: Any) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < _MAX_IDLE:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()


def _describe(exc: BaseException, timeout: float) -> Tuple[str, bool]:
    """Words for a transport error, and whether it is worth retrying."""
    import socket
    import ssl

    from .guard import BlockedAddressError

    if isinstance(exc, BlockedAddressError):
        return str(exc), False  # the SSRF guard refused the address: retrying cannot help
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {exc.verify_message or exc}", False
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"timed out after {timeout:g} s", True
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused", True
    if isinstance(exc, socket.gaierror):
        return f"could not resolve the host: {exc.strerror or exc}", True
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the server", True
    name = type(exc).__name__
    text = str(exc)
    # A request http.client cannot even write (a header value outside latin-1) fails
    # the same way every time: not worth a retry.
    return (f"{name}: {text}" if text else name), not isinstance(exc, (ValueError, TypeError))


def _safe_url(scheme: str, host: str, port: int, default_port: int) -> str:
    """The URL's origin only: paths of hooks (Slack, Discord) hold tokens."""
    netloc = host if port == default_port else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        netloc = f"[{host}]" if port == default_port else f"[{host}]:{port}"
    return f"{scheme}://{netloc}/…"


class Sender:
    """Signs and POSTs JSON to one URL, retrying what is worth retrying.

    ``secret=None`` sends unsigned requests. Thread-safe; connections are kept
    alive and reused. Use as a context manager, or call :meth:`close`.

    ``block_private=True`` is the SSRF guard for URLs that users type in: the
    host is resolved once, and a delivery to a loopback, private, link-local
    (cloud metadata), multicast or reserved address fails without a retry
    (``Delivery.error`` names the address and why); the connection goes to
    the address that was checked. ``allow_networks`` lets some networks
    through anyway; ``resolver(host, port) -> [address, ...]`` replaces DNS
    (tests). ``ssl_context`` is an ``ssl.SSLContext`` for a custom CA or a
    client certificate (mutual TLS); by default certificates are verified
    against the system's CAs.
    """

    def __init__(
        self,
        url: str,
        secret: Optional[Secret] = None,
        *,
        scheme: str = "standard",
        timeout: float = 10.0,
        retry: Optional[Retry] = None,
        headers: Optional[Mapping[str, str]] = None,
        ssl_context: Any = None,
        block_private: bool = False,
        allow_networks: Iterable[str] = (),
        resolver: Optional[Callable[[str, int], Iterable[str]]] = None,
    ) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the URL must be http:// or https:// with a host, not {url[:80]!r}")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"the URL's port is not a number: {url[:80]!r}") from None
        default_port = 443 if parts.scheme == "https" else 80
        #: The URL every message is POSTed to.
        self.url = url
        #: The signing scheme name.
        self.scheme = scheme
        #: Seconds a connection, a read, or a whole response may take.
        self.timeout = timeout
        #: The retry policy.
        self.retry = retry if retry is not None else Retry()
        self._signer = Signer(secret, scheme, signing=True) if secret is not None else None
        if secret is None and scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        extra = dict(headers or {})
        for name, value in extra.items():
            if not isinstance(name, str) or not is_token(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if not isinstance(value, str) or not is_field_value(value):
                raise ValueError(f"header {name!r}: the value may not contain CR, LF, NUL, VT or FF, "
                                 f"nor characters beyond latin-1: {str(value)[:60]!r}")
        self._base_headers = {
            "Content-Type": "application/json",
            "User-Agent": f"webhooklite/{__version__}",
        }
        for name, value in extra.items():
            lower = str(name).lower()
            if lower in _OWN_HEADERS:
                raise ValueError(f"header {name!r} is set by the Sender itself on every attempt")
            # Header names ignore case: "content-type" replaces the default, it does not add a second one.
            for key in [k for k in self._base_headers if k.lower() == lower]:
                del self._base_headers[key]
            self._base_headers[name] = value
        self._safe_url = _safe_url(parts.scheme, parts.hostname, port or default_port, default_port)
        #: Whether the SSRF guard is on (see the class docstring).
        self.block_private = block_private
        guard = None
        if block_private:
            from .guard import AddressGuard

            guard = AddressGuard(allow_networks, resolver)
        elif allow_networks or resolver is not None:
            raise ValueError("allow_networks and resolver are options of block_private=True")
        self._pool = _Pool(parts.scheme, parts.hostname, port or default_port, timeout, ssl_context, guard)

    def __repr__(self) -> str:
        return f"Sender({self._safe_url!r}, scheme={self.scheme!r}, signed={self._signer is not None})"

    def __enter__(self) -> "Sender":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the kept-alive connections."""
        self._pool.close()

    # -- building (pure) -------------------------------------------------------

    def prepare(self, body: bytes, msg_id: str, event: Optional[str] = None, timestamp: Optional[int] = None) -> Dict[str, str]:
        """The headers for one attempt: content type, id, signature (fresh timestamp)."""
        ts = int(time.time()) if timestamp is None else timestamp
        headers = dict(self._base_headers)
        headers["webhook-id"] = msg_id
        if self._signer is not None:
            headers.update(self._signer.sign(body, msg_id, ts))
        if self.scheme == "standard" or self._signer is None:
            headers["webhook-timestamp"] = str(ts)
        if self.scheme == "github":
            if event:
                headers["X-GitHub-Event"] = event
            headers["X-GitHub-Delivery"] = msg_id
        return headers

    # -- sending ---------------------------------------------------------------

    def send(self, event: str, data: Any = None, *, id: Optional[str] = None) -> Delivery:
        """Send ``event`` with ``data`` in the webhooklite envelope; return the Delivery.

        Under ``scheme="stripe"`` the envelope carries the message id as ``id``
        (Stripe signs no id header: receivers dedupe on the body's ``id``).
        """
        msg_id = id or new_message_id()
        body = encode_event(event, data, id=msg_id if self.scheme == "stripe" else None)
        return self.deliver(body, msg_id=msg_id, event=event)

    def post(self, payload: Any, *, id: Optional[str] = None) -> Delivery:
        """POST any JSON as is, no envelope (Slack, Discord, your own format)."""
        body = payload if isinstance(payload, bytes) else encode_json(payload)
        return self.deliver(body, msg_id=id)

    def deliver(
        self,
        body: bytes,
        *,
        msg_id: Optional[str] = None,
        event: Optional[str] = None,
        on_retry: Optional[Callable[[Delivery, float], None]] = None,
    ) -> Delivery:
        """Send an encoded body, retrying per ``self.retry``; return the Delivery.

        ``on_retry(delivery, wait)`` is called after each failed attempt that
        will be retried, before the wait (the CLI prints them).
        """
        msg_id = msg_id or new_message_id()
        check_header_value("the message id", msg_id)
        if event is not None:
            check_header_value("the event type", event)
        start = time.monotonic()
        n = 0
        while True:
            n += 1
            d = self.attempt(body, msg_id, event)
            d.attempts = n
            d.elapsed = time.monotonic() - start
            if d.ok or not d.retryable or n >= self.retry.attempts:
                if not d.ok:
                    log.warning("delivery %s to %s failed after %d attempt(s): %s", msg_id, self._safe_url, n, d.error)
                return d
            wait = self.retry.delay(n, d.retry_after)
            if on_retry is not None:
                on_retry(d, wait)
            log.info("delivery %s to %s attempt %d failed (%s); retrying in %.2f s", msg_id, self._safe_url, n, d.error, wait)
            time.sleep(wait)

    def attempt(self, body: bytes, msg_id: str, event: Optional[str] = None) -> Delivery:
        """Make exactly one attempt (no retry); the Delivery says whether to retry."""
        headers = self.prepare(body, msg_id, event)
        start = time.monotonic()
        d = Delivery(msg_id, self.url, attempts=1)
        try:
            status, reason, resp_headers, resp_body = self._exchange(body, headers)
        except Exception as exc:  # translated at the boundary: nothing escapes as a raw OSError
            d.error, d.retryable = _describe(exc, self.timeout)
            d.elapsed = time.monotonic() - start
            return d
        d.elapsed = time.monotonic() - start
        d.status, d.response_body = status, resp_body
        if 200 <= status < 300:
            d.ok = True
        elif 300 <= status < 400:
            where = resp_headers.get("location")
            d.error = f"{status} {reason}: redirect" + (f" to {where[:200]}" if where else "") + " not followed (use the final URL)"
        else:
            d.error = f"{status} {reason}".strip()
            d.retryable = status in RETRY_STATUSES
            d.retry_after = _parse_retry_after(resp_headers.get("retry-after"))
        return d

    def _exchange(self, body: bytes, headers: Dict[str, str]) -> Tuple[int, str, Dict[str, str], bytes]:
        import http.client

        deadline = time.monotonic() + self.timeout
        # The response is read against the deadline, however slowly it trickles in.
        response_class = functools.partial(_deadline_response, deadline=deadline, timeout=self.timeout)
        conn, reused = self._pool.get()
        try:
            try:
                conn.response_class = response_class
                conn.request("POST", self._target, body, headers)
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
                if not reused:
                    raise
                # The server closed the kept-alive connection as we reused it: one fresh try.
                conn.close()
                conn, reused = self._pool._new(), False
                conn.response_class = response_class
                conn.request("POST", self._target, body, headers)
                resp = conn.getresponse()
            chunks, size = [], 0
            while size <= RESPONSE_CAP:
                if time.monotonic() > deadline:
                    raise TimeoutError("the response did not end in time")
                chunk = resp.read(16384)  # read(), unlike read1(), marks the end of a sized body
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            data = b"".join(chunks)
            # Read only to explain a failure (Location, Retry-After): a 2xx needs none of them.
            ok = 200 <= resp.status < 300
            resp_headers = {} if ok else {k.lower(): v for k, v in resp.getheaders()}
            if size > RESPONSE_CAP or not resp.isclosed() or resp.will_close:
                # Too big to read to the end, or the server will close: not reusable.
                conn.close()
            else:
                conn.sock.settimeout(self.timeout)  # _DeadlineReader shortened it
                self._pool.put(conn)
            conn = None
            return resp.status, resp.reason or "", resp_headers, data[:RESPONSE_CAP]
        finally:
            if conn is not None:
                conn.close()


class _DeadlineReader(io.RawIOBase):
    """Reads a socket until a deadline: a response that trickles in forever times out.

    It reads through the socket's own ``SocketIO`` (what ``makefile`` gives
    http.client), which keeps the file descriptor open until the response is
    closed: on a ``Connection: close`` answer http.client closes the
    connection right after the head, before the body is read.
    """

    def __init__(self, raw: Any, sock: Any, deadline: float, timeout: float) -> None:
        self._raw, self._sock, self._deadline, self._timeout = raw, sock, deadline, timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        import socket

        left = self._deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("the response did not end in time")
        self._sock.settimeout(min(left, self._timeout))
        return self._raw.readinto(buffer)

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        if not self.closed:
            self._raw.close()  # releases the socket (closed for good if the connection was)
        super().close()


def _deadline_response(sock: Any, debuglevel: int = 0, method: Optional[str] = None, url: Optional[str] = None,
                       *, deadline: float, timeout: float) -> Any:
    """An http.client response whose reads (status, headers, body) all end by ``deadline``."""
    import http.client

    resp = http.client.HTTPResponse(sock, debuglevel, method=method, url=url)
    raw = resp.fp.detach()  # the stock reader's SocketIO (nothing is buffered yet): it holds the socket open
    resp.fp = io.BufferedReader(_DeadlineReader(raw, sock, deadline, timeout))
    return resp


def send(
    url: str,
    event: str,
    data: Any = None,
    *,
    secret: Optional[Secret] = None,
    **options: Any,
) -> Delivery:
    """Send one event and return its Delivery, like ``requests.post`` for webhooks.

    ``options`` are :class:`Sender`'s keywords (``scheme``, ``timeout``,
    ``retry``, ``headers``, ``ssl_context``, ``block_private``...).
    """
    with Sender(url, secret, **options) as sender:
        return sender.send(event, data)
