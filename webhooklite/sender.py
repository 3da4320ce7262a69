"""Sending: Sender, Delivery, Retry and Timeout, on sockets with kept-alive connections.

The request is built purely (:meth:`Sender.prepare`), then sent. One
``webhook-id`` for every attempt of a message; a fresh timestamp and
signature on each. The Sender opens its own connections (every address of
the host, 250 ms apart, under the connect budget), writes each request in
one ``sendall`` and reads the answer with a sans-IO reader
(``_response.ResponseReader``) under the read budget. urllib's ``urlopen``
sends ``Connection: close`` on every request, and http.client offers neither
a connect budget across addresses nor a deadline for a whole response.
"""
import datetime
import math
import re
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from . import __version__, _lazylog
from .errors import DeliveryError
from .events import encode_event, encode_json
from .headers import check_header_value, parse_uint
from .signing import SCHEMES, Secret, Signer, new_message_id

__all__ = ["Sender", "Delivery", "Retry", "Timeout", "RETRY_STATUSES", "send"]

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
#: Seconds between connection attempts to a host's successive addresses (RFC 8305's
#: "Connection Attempt Delay"): one that drops SYNs holds the others back this long only.
STAGGER = 0.25
#: Headers a Sender sets per attempt (or per request): not for ``headers=``.
_OWN_HEADERS = frozenset(
    {"webhook-id", "webhook-timestamp", "webhook-signature", "x-hub-signature-256", "stripe-signature",
     "x-github-event", "x-github-delivery", "content-length", "transfer-encoding"}
)
#: Headers given to relay() that the Sender writes itself or drops (this connection's, not the message's).
_RELAY_OWN = frozenset({"host", "content-length", "transfer-encoding", "connection"})
#: A header name (RFC 9110 token).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


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


class Timeout:
    """How long one attempt may take, per phase, as urllib3's ``Timeout(connect=, read=)``.

    ``connect``: seconds to open a connection: TCP to each of the host's
    addresses in turn (a new one every 250 ms, or at once when one fails; the
    first to connect wins, and none waits past what is left of the budget),
    then the TLS handshake. Resolving the name is not included (the system
    resolver cannot be interrupted). ``read``: seconds from connected (or
    from taking a kept-alive connection) to the end of the answer: writing the
    request and reading the whole response, however slowly it trickles in.
    ``Sender(timeout=10.0)`` means ``Timeout(connect=10.0, read=10.0)``; an
    attempt takes at most ``connect + read``.
    """

    __slots__ = ("connect", "read")

    def __init__(self, connect: float = 10.0, read: float = 10.0) -> None:
        for what, value in (("connect", connect), ("read", read)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"the {what} timeout is a positive number of seconds, not {value!r}")
        #: Seconds to connect (all addresses, and the TLS handshake).
        self.connect = float(connect)
        #: Seconds from connected to the end of the answer.
        self.read = float(read)

    @classmethod
    def of(cls, value: Union[float, "Timeout"]) -> "Timeout":
        """``value`` as a Timeout: a number is both budgets."""
        if isinstance(value, Timeout):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"timeout is a number of seconds or a Timeout, not {value!r}")
        return cls(value, value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Timeout) and (self.connect, self.read) == (other.connect, other.read)

    def __hash__(self) -> int:
        return hash((self.connect, self.read))

    def __repr__(self) -> str:
        return f"Timeout(connect={self.connect:g}, read={self.read:g})"


class Retry:
    """When and how often to try again.

    ``attempts`` counts every try including the first (``Retry(attempts=1)``:
    no retry). The n-th wait is ``min(max_delay, backoff * 2**(n-1))``
    ± ``jitter`` (a fraction: 0.2 is ±20%), and never shorter than the
    answer's ``Retry-After``. When that asks for longer than ``max_delay``,
    the Sender stops retrying and reports the failed delivery with
    ``Delivery.retry_after`` set (an Outbox schedules the next attempt then).
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
            base = max(base, retry_after)  # never sooner than the receiver asked
        return max(0.0, float(base))

    def __repr__(self) -> str:
        return (
            f"Retry(attempts={self.attempts}, backoff={self.backoff}, "
            f"max_delay={self.max_delay}, jitter={self.jitter})"
        )


class Delivery:
    """What happened to one message: the outcome of its last attempt, and how many there were."""

    __slots__ = ("id", "url", "ok", "status", "attempts", "elapsed", "response_body", "error", "retry_after", "retryable",
                 "response_headers")

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
        response_headers: Optional[Dict[str, str]] = None,
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
        #: The last response's headers, lower-case names (repeated ones joined with ", "); {} when no answer came.
        self.response_headers: Dict[str, str] = {} if response_headers is None else response_headers

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


class _ConnectTimeout(TimeoutError):
    """No address of the host connected (TCP and TLS) within the connect budget."""


class _ReadTimeout(TimeoutError):
    """The answer did not end within the read budget."""


class _Closed(ConnectionError):
    """The server closed the connection before its answer ended."""


class _Stale(Exception):
    """A kept-alive connection the server had closed: the request may go again on a new one."""


def _interleave(addresses: List[Tuple[int, Any]]) -> List[Tuple[int, Any]]:
    """Addresses in the resolver's order, families alternating from the first's (RFC 8305 §4)."""
    if len({family for family, _ in addresses}) < 2:
        return addresses
    first = addresses[0][0]
    same = [a for a in addresses if a[0] == first]
    other = [a for a in addresses if a[0] != first]
    out: List[Tuple[int, Any]] = []
    for i in range(max(len(same), len(other))):
        out += same[i:i + 1] + other[i:i + 1]
    return out


def _open(addresses: List[Tuple[int, Any]], deadline: float) -> Any:
    """A TCP socket connected to the first of ``addresses`` that answers before ``deadline``.

    One address: a plain connect. Several: a new attempt every ``STAGGER`` seconds (at
    once when one fails), all racing, the first to connect wins (RFC 8305, "Happy
    Eyeballs"): an address that drops SYNs costs 250 ms, not the whole budget.
    """
    import socket

    if len(addresses) == 1:
        family, sockaddr = addresses[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.connect(sockaddr)
        except socket.timeout:
            sock.close()
            raise _ConnectTimeout(f"no answer from {sockaddr[0]}") from None
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
                raise _ConnectTimeout("no answer from " + ", ".join(str(a[0]) for a in pending.values()))
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


class _Pool:
    """Idle HTTP/1.1 connections to one origin, shared by threads; opens new ones."""

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        timeout: Timeout,
        ssl_context: Any,
        guard: Any = None,
        resolver: Optional[Callable[[str, int], Iterable[str]]] = None,
    ) -> None:
        self.scheme, self.host, self.port = scheme, host, port
        self.timeout = timeout
        self.ssl_context = ssl_context
        #: The SSRF guard (``block_private=True``): resolves and checks the addresses.
        self.guard = guard
        self.resolver = resolver
        self._idle: List[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _addresses(self) -> List[Tuple[int, Any]]:
        import socket

        if self.guard is not None:
            ips = [str(ip) for ip in self.guard.check(self.host, self.port)]
        elif self.resolver is not None:
            ips = [str(a).split("%", 1)[0] for a in self.resolver(self.host, self.port)]
        else:
            found: List[Tuple[int, Any]] = []
            for family, _, _, _, sockaddr in socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM):
                if (family, sockaddr) not in found:
                    found.append((family, sockaddr))
            return _interleave(found)
        if not ips:
            raise socket.gaierror(f"{self.host} resolved to no address")
        return _interleave([(socket.AF_INET6 if ":" in ip else socket.AF_INET, (ip, self.port)) for ip in ips])

    def new(self) -> _Connection:
        """A new connection: TCP (every address, under the connect budget), then TLS."""
        import socket

        deadline = time.monotonic() + self.timeout.connect
        sock = _open(self._addresses(), deadline)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.scheme == "https":
                ctx = self._tls()
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                try:
                    # The connection may go to a checked address; TLS verifies the URL's host name.
                    sock = ctx.wrap_socket(sock, server_hostname=self.host)
                except socket.timeout:
                    raise _ConnectTimeout("the TLS handshake did not finish") from None
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


def _describe(exc: BaseException, timeout: Union[float, Timeout]) -> Tuple[str, bool]:
    """Words for a transport error, and whether it is worth retrying."""
    import socket
    import ssl

    from ._response import ProtocolError
    from .guard import BlockedAddressError

    t = Timeout.of(timeout)
    if isinstance(exc, BlockedAddressError):
        return str(exc), False  # the SSRF guard refused the address: retrying cannot help
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {exc.verify_message or exc}", False
    if isinstance(exc, _ConnectTimeout):
        return f"connect timed out after {t.connect:g} s ({exc})", True
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"timed out after {t.read:g} s waiting for the answer", True
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused", True
    if isinstance(exc, socket.gaierror):
        return f"could not resolve the host: {exc.strerror or exc}", True
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the server", True
    if isinstance(exc, _Closed):
        return str(exc), True
    if isinstance(exc, ProtocolError):
        return f"the answer is not valid HTTP/1.1: {exc}", True
    name = type(exc).__name__
    text = str(exc)
    return (f"{name}: {text}" if text else name), not isinstance(exc, (ValueError, TypeError))


def _printable(text: str) -> str:
    """``text`` with every control, format (bidi) and separator character escaped as ``\\xNN``/``\\uNNNN``.

    Delivery.error quotes what the server sent (reason phrase, Location, malformed
    lines): escaped here, once, it cannot drive the terminal or forge log lines of
    whoever prints it (the CLI, the outbox's records, the library's log).
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)  # repr escapes exactly those


def _safe_url(scheme: str, host: str, port: int, default_port: int) -> str:
    """The URL's origin only: paths of hooks (Slack, Discord) hold tokens."""
    netloc = host if port == default_port else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        netloc = f"[{host}]" if port == default_port else f"[{host}]:{port}"
    return f"{scheme}://{netloc}/…"


def _host_header(host: str, port: int, default_port: int) -> str:
    """The Host header for the URL's host, as http.client writes it (IDNA, IPv6 in brackets)."""
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        host = host.encode("idna").decode("ascii")
    if ":" in host:
        host = f"[{host}]"
    return host if port == default_port else f"{host}:{port}"


class Sender:
    """Signs and POSTs JSON to one URL, retrying what is worth retrying.

    ``secret=None`` sends unsigned requests. Thread-safe; connections are kept
    alive and reused. Use as a context manager, or call :meth:`close`.

    ``timeout`` is a number of seconds for each phase or a
    :class:`Timeout` ``(connect=, read=)``: connecting (every address of the
    host, and TLS) and then the exchange (the request and the whole answer).

    ``block_private=True`` is the SSRF guard for URLs that users type in: the
    host is resolved once, and a delivery to a loopback, private, link-local
    (cloud metadata), multicast or reserved address fails without a retry
    (``Delivery.error`` names the address and why); the connection goes to
    the address that was checked. ``allow_networks`` lets some networks
    through anyway. ``resolver(host, port) -> [address, ...]`` replaces DNS
    (tests, or a fixed address for a host). ``ssl_context`` is an
    ``ssl.SSLContext`` for a custom CA or a client certificate (mutual TLS);
    by default certificates are verified against the system's CAs.
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
        port = port or default_port
        credentials = None
        if parts.username is not None or parts.password is not None:
            # http://user:pass@host/: sent as Basic auth (as requests does), kept out of url and logs.
            from urllib.parse import unquote, urlunsplit

            credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            url = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, parts.fragment))
        #: The URL every message is POSTed to (without the credentials it may have held).
        self.url = url
        #: The signing scheme name.
        self.scheme = scheme
        #: The connect and read budgets of one attempt (a number given is both).
        self.timeout = Timeout.of(timeout)
        #: The retry policy.
        self.retry = retry if retry is not None else Retry()
        self._signer = Signer(secret, scheme) if secret is not None else None
        if secret is None and scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        extra = dict(headers or {})
        for name, value in extra.items():
            check_header_value(f"header {name!r}", f"{name}{value}")
            if not _TOKEN.fullmatch(str(name)):
                raise ValueError(f"{name!r} is not a valid header name")
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
        if credentials is not None:
            if any(k.lower() == "authorization" for k in self._base_headers):
                raise ValueError("the URL holds credentials and headers= an Authorization header: give one of them")
            import base64

            self._base_headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
        host_line = f"Host: {_host_header(parts.hostname, port, default_port)}\r\n"
        #: The request line and Host header of a relayed request.
        self._relay_head = f"POST {target} HTTP/1.1\r\n{host_line}".encode("latin-1")
        #: The Authorization header that the URL's credentials make, for relay().
        self._url_auth = self._base_headers.get("Authorization") if credentials is not None else None
        head = f"POST {target} HTTP/1.1\r\n"
        if not any(k.lower() == "host" for k in self._base_headers):
            head += host_line
        head += "Accept-Encoding: identity\r\n"  # what http.client sent: no compressed answers
        head += "".join(f"{k}: {v}\r\n" for k, v in self._base_headers.items())
        try:
            #: Request line and the headers every attempt shares, encoded once.
            self._head = head.encode("latin-1")
        except UnicodeEncodeError as e:
            raise ValueError(f"a header or the URL's path is not latin-1 text: {e.object[e.start:e.end + 20]!r}") from None
        self._safe_url = _safe_url(parts.scheme, parts.hostname, port, default_port)
        #: Whether the SSRF guard is on (see the class docstring).
        self.block_private = block_private
        guard = None
        if block_private:
            from .guard import AddressGuard

            guard = AddressGuard(allow_networks, resolver)
        elif allow_networks:
            raise ValueError("allow_networks is an option of block_private=True")
        self._pool = _Pool(parts.scheme, parts.hostname, port, self.timeout, ssl_context, guard, resolver)

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

    def _attempt_headers(self, body: bytes, msg_id: str, event: Optional[str], ts: int) -> Dict[str, str]:
        headers = {"webhook-id": msg_id}
        if self._signer is not None:
            headers.update(self._signer.sign(body, msg_id, ts))
        if self.scheme == "standard" or self._signer is None:
            headers["webhook-timestamp"] = str(ts)
        if self.scheme == "github":
            if event:
                headers["X-GitHub-Event"] = event
            headers["X-GitHub-Delivery"] = msg_id
        return headers

    def prepare(self, body: bytes, msg_id: str, event: Optional[str] = None, timestamp: Optional[int] = None) -> Dict[str, str]:
        """The headers for one attempt: content type, id, signature (fresh timestamp)."""
        ts = int(time.time()) if timestamp is None else timestamp
        headers = dict(self._base_headers)
        headers.update(self._attempt_headers(body, msg_id, event, ts))
        return headers

    def _request(self, body: bytes, msg_id: str, event: Optional[str]) -> bytes:
        """The bytes of one attempt: request line, headers (fresh timestamp and signature), body."""
        own = self._attempt_headers(body, msg_id, event, int(time.time()))
        lines = "".join([f"{k}: {v}\r\n" for k, v in own.items()])
        return b"".join((self._head, lines.encode("latin-1"), b"Content-Length: %d\r\n\r\n" % len(body), body))

    # -- sending ---------------------------------------------------------------

    def send(self, event: str, data: Any = None, *, id: Optional[str] = None) -> Delivery:
        """Send ``event`` with ``data`` in the webhooklite envelope; return the Delivery."""
        return self.deliver(encode_event(event, data), msg_id=id, event=event)

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
        _check_value("the message id", msg_id)
        if event is not None:
            _check_value("the event type", event)
        start = time.monotonic()
        n = 0
        while True:
            n += 1
            d = self.attempt(body, msg_id, event)
            d.attempts = n
            d.elapsed = time.monotonic() - start
            wait = _next_wait(self.retry, d, self._safe_url)
            if wait is None:
                return d
            if on_retry is not None:
                on_retry(d, wait)
            time.sleep(wait)

    def attempt(self, body: bytes, msg_id: str, event: Optional[str] = None) -> Delivery:
        """Make exactly one attempt (no retry); the Delivery says whether to retry."""
        return self._attempt(self._request(body, msg_id, event), Delivery(msg_id, self.url, attempts=1))

    def relay(self, body: bytes, headers: Mapping[str, str]) -> Delivery:
        """POST ``body`` once with exactly ``headers``: no signing, no retry, no envelope.

        For forwarding a delivery that is already signed (``listen --forward-to``,
        ``replay``), through the same connections, timeouts and SSRF guard as
        :meth:`send`. The Sender adds only what HTTP/1.1 needs: ``Host`` and
        ``Content-Length`` (given ones, and ``Connection`` and
        ``Transfer-Encoding``, are dropped: they describe one connection, not the
        message), and the URL's credentials as ``Authorization`` unless
        ``headers`` has one. ``Delivery.id`` is the ``webhook-id`` (or
        ``svix-id``, ``X-GitHub-Delivery``) of ``headers``, else "";
        ``Delivery.response_headers`` has the answer's headers. A header name
        that is not a token, or a value with CR, LF or NUL, is a ValueError.
        Nothing is logged: the caller reports the outcome.
        """
        lines = []
        msg_id = ""
        auth = self._url_auth
        for name, value in headers.items():
            lower = str(name).lower()
            if not _TOKEN.fullmatch(str(name)):
                raise ValueError(f"{name!r} is not a valid header name")
            _check_value(f"header {name!r}", value)
            if lower in _RELAY_OWN:
                continue
            if lower == "authorization":
                auth = None
            if not msg_id and lower in ("webhook-id", "svix-id", "x-github-delivery"):
                msg_id = value
            lines.append(f"{name}: {value}\r\n")
        if auth is not None:
            lines.append(f"Authorization: {auth}\r\n")
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        request = b"".join((self._relay_head, "".join(lines).encode("latin-1"), body))
        return self._attempt(request, Delivery(msg_id, self.url, attempts=1))

    def _attempt(self, request: bytes, d: Delivery) -> Delivery:
        start = time.monotonic()
        try:
            answer = self._exchange(request)
        except Exception as exc:  # translated at the boundary: nothing escapes as a raw OSError
            error, d.retryable = _describe(exc, self.timeout)
            d.error = _printable(error)
            d.elapsed = time.monotonic() - start
            return d
        d.elapsed = time.monotonic() - start
        status, resp_headers = answer.status, answer.headers
        d.status, d.response_body, d.response_headers = status, answer.body, resp_headers
        if 200 <= status < 300:
            d.ok = True
            return d
        reason = answer.reason[:200]
        if 300 <= status < 400:
            where = resp_headers.get("location")
            error = f"{status} {reason}: redirect" + (f" to {where[:200]}" if where else "") + " not followed (use the final URL)"
        else:
            error = f"{status} {reason}".strip()
            d.retryable = status in RETRY_STATUSES
            d.retry_after = _parse_retry_after(resp_headers.get("retry-after"))
        # The server's words go to logs, terminals and outbox rows: no control characters.
        d.error = _printable(error)
        return d

    def _exchange(self, request: bytes) -> Any:
        """Send ``request`` on a pooled connection; the ResponseReader with the answer."""
        conn: Optional[_Connection]
        conn, reused = self._pool.get()
        try:
            try:
                answer = self._roundtrip(conn, request, reused)
            except _Stale:
                # The server closed the kept-alive connection as we reused it: one fresh try.
                conn.close()
                conn = self._pool.new()
                answer = self._roundtrip(conn, request, False)
            if answer.reusable:
                if conn.timeout != self.timeout.read:
                    conn.sock.settimeout(self.timeout.read)
                    conn.timeout = self.timeout.read
                self._pool.put(conn)
            else:
                conn.close()
            conn = None
            return answer
        finally:
            if conn is not None:
                conn.close()

    def _roundtrip(self, conn: _Connection, request: bytes, reused: bool) -> Any:
        import socket

        from ._response import ResponseReader

        read = self.timeout.read
        deadline = time.monotonic() + read
        sock = conn.sock
        try:
            sock.sendall(request)
        except socket.timeout:
            raise _ReadTimeout("timed out") from None
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            if reused:
                raise _Stale() from None
            raise
        answer = ResponseReader(RESPONSE_CAP)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _ReadTimeout("timed out")
            if left < conn.timeout - 0.01:  # the deadline is nearer than the socket's timeout
                sock.settimeout(left)
                conn.timeout = left
            try:
                data = sock.recv(65536)
            except socket.timeout:
                raise _ReadTimeout("timed out") from None
            except (ConnectionResetError, ConnectionAbortedError):
                if reused and not answer.started:
                    raise _Stale() from None
                raise
            if not data:
                if reused and not answer.started:
                    raise _Stale()
                if answer.feed_eof():
                    return answer
                raise _Closed("the server closed the connection " + (
                    "before its answer ended" if answer.started else "without answering"))
            if answer.feed(data):
                return answer


def _next_wait(retry: Retry, d: Delivery, where: str) -> Optional[float]:
    """After attempt ``d.attempts``: None when ``d`` is the outcome (logged if it failed), else the wait.

    A ``Retry-After`` longer than ``max_delay`` ends the retries here (DESIGN.md): the
    receiver is never asked again sooner than it said, and ``d.retry_after`` tells the
    caller (an Outbox schedules the next attempt after it).
    """
    n = d.attempts
    if d.ok:
        return None
    if d.retryable and n < retry.attempts and d.retry_after is not None and d.retry_after > retry.max_delay:
        d.error = f"{d.error}; Retry-After asks for {d.retry_after:g} s, more than max_delay ({retry.max_delay:g} s): not retried now"
    elif d.retryable and n < retry.attempts:
        wait = retry.delay(n, d.retry_after)
        log.info("delivery %s to %s attempt %d failed (%s); retrying in %.2f s", d.id, where, n, d.error, wait)
        return wait
    log.warning("delivery %s to %s failed after %d attempt(s): %s", d.id, where, n, d.error)
    return None


def _check_value(what: str, value: str) -> None:
    """A value bound for a header: no CR, LF or NUL (no injection), and latin-1 (what HTTP carries)."""
    check_header_value(what, value)
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be latin-1 text for an HTTP header: {value[:60]!r}") from None


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
