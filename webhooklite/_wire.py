"""The rules of sending, without I/O: shared by the thread Sender and the AsyncSender.

What a delivery attempt puts on the wire and what its answer means are the
same whatever carries the bytes, so they live here once, as h11's state
machine serves its sync and async users alike (and httpx's ``BaseClient``
its two clients):

- the policies: :class:`Retry` (backoff, jitter, Retry-After as a floor and
  its limit: :func:`next_wait`), :class:`Timeout` (connect and read budgets);
- :class:`Target`: one URL parsed once (credentials become Basic auth, the
  path and host are checked), which builds each attempt's bytes (request
  line, headers, fresh timestamp and signature, body) and a relayed request's;
- judging: :func:`judge` turns an answer into a :class:`Delivery` (ok,
  retryable statuses, Retry-After, redirect words, 410), :func:`failed`
  turns a transport error into one (:func:`describe`), with what the server
  said escaped (:func:`printable`).

The transports (``sender.py`` on sockets and threads, ``aio.py`` on asyncio)
only connect, write, read through ``_response.ResponseReader`` and wait (the
thread one in ``_connections``). This
module is loaded by ``import webhooklite`` (Delivery and Retry are public), so
it imports nothing heavy at the top: no socket, ssl, asyncio or http.client.
"""
from __future__ import annotations

import datetime
import math
import time

from . import __version__, _lazylog
from .errors import DeliveryError
from .headers import is_field_value, is_token, parse_uint
from .signing import SCHEMES, Signer

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see webhooklite/__init__.py)
if TYPE_CHECKING:
    from typing import Any, Dict, Mapping, Optional, Tuple, Union

    from .signing import Secret

__all__ = ["Delivery", "Retry", "Timeout", "Target", "RETRY_STATUSES", "RESPONSE_CAP", "judge", "failed",
           "describe", "next_wait", "printable", "STAGGER"]

log = _lazylog.getLogger("webhooklite")  # logging is imported when first used

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
#: How much of a response body a Delivery keeps (and reads at most).
RESPONSE_CAP = 64 * 1024
#: Idle connections a Sender keeps open for reuse.
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


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
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
    then the TLS handshake; for the AsyncSender also resolving the name and
    waiting for a free connection (the thread Sender cannot interrupt the
    system resolver, so DNS is outside its budget). ``read``: seconds from connected (or
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


class ConnectTimeout(TimeoutError):
    """No address of the host connected (TCP and TLS) within the connect budget."""


class ReadTimeout(TimeoutError):
    """The answer did not end within the read budget."""


class Closed(ConnectionError):
    """The server closed the connection before its answer ended."""


class Stale(Exception):
    """A kept-alive connection the server had closed: the request may go again on a new one."""


def describe(exc: BaseException, timeout: Union[float, Timeout]) -> Tuple[str, bool]:
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
    if isinstance(exc, ConnectTimeout):
        return f"connect timed out after {t.connect:g} s ({exc})", True
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"timed out after {t.read:g} s waiting for the answer", True
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused", True
    if isinstance(exc, socket.gaierror):
        return f"could not resolve the host: {exc.strerror or exc}", True
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the server", True
    if isinstance(exc, Closed):
        return str(exc), True
    if isinstance(exc, ProtocolError):
        return f"the answer is not valid HTTP/1.1: {exc}", True
    name = type(exc).__name__
    text = str(exc)
    return (f"{name}: {text}" if text else name), not isinstance(exc, (ValueError, TypeError))


def printable(text: str) -> str:
    """``text`` with every control, format (bidi) and line-separator character escaped (``_text.escape``).

    Delivery.error quotes what the server sent (reason phrase, Location, malformed
    lines): escaped here, once, it cannot drive the terminal or forge log lines of
    whoever prints it (the CLI, the outbox's records, the library's log).
    """
    if text.isprintable():  # the usual case, without loading the rule
        return text
    from ._text import escape

    return escape(text)


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



def next_wait(retry: Retry, d: Delivery, where: str) -> Optional[float]:
    """After attempt ``d.attempts``: None when ``d`` is the outcome (logged if it failed), else the wait.

    A ``Retry-After`` longer than ``max_delay`` ends the retries here: the
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


def check_value(what: str, value: str) -> None:
    """A value bound for a header, by the grammar every transport shares (``headers.is_field_value``):
    no CR, LF or NUL (no injection), no VT or FF, and latin-1 (what HTTP carries)."""
    if not isinstance(value, str) or not is_field_value(value):
        raise ValueError(
            f"{what} may not contain CR, LF, NUL, VT or FF, nor characters beyond latin-1: {str(value)[:60]!r}"
        )


def check_name(name: Any) -> None:
    """A header name: an RFC 9110 token (``headers.is_token``)."""
    if not isinstance(name, str) or not is_token(name):
        raise ValueError(f"{name!r} is not a valid header name")




class Target:
    """One URL, parsed once, and the bytes of every request a sender makes to it.

    Checks everything that can be checked before sending (scheme, host, port,
    header names and values, latin-1), turns credentials in the URL into Basic
    auth (and drops them from :attr:`url`), and encodes the request line and
    the headers every attempt shares once.
    """

    __slots__ = ("url", "scheme", "tls", "host", "port", "safe_url", "signer", "base_headers",
                 "_head", "_relay_head", "_url_auth")

    def __init__(self, url: str, secret: Optional[Secret], scheme: str, headers: Optional[Mapping[str, str]]) -> None:
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
        #: The URL (without the credentials it may have held).
        self.url = url
        #: The signing scheme name.
        self.scheme = scheme
        #: True for https://.
        self.tls = parts.scheme == "https"
        #: The URL's host name (what TLS verifies) and port.
        self.host, self.port = parts.hostname, port
        #: The URL's origin only, for logs: paths of hooks (Slack, Discord) hold tokens.
        self.safe_url = _safe_url(parts.scheme, parts.hostname, port, default_port)
        #: The Signer, or None for unsigned requests.
        self.signer = Signer(secret, scheme, signing=True) if secret is not None else None
        if secret is None and scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
        extra = dict(headers or {})
        for name, value in extra.items():
            check_name(name)
            check_value(f"header {name!r}", value)
        base = {"Content-Type": "application/json", "User-Agent": f"webhooklite/{__version__}"}
        for name, value in extra.items():
            lower = str(name).lower()
            if lower in _OWN_HEADERS:
                raise ValueError(f"header {name!r} is set by the Sender itself on every attempt")
            # Header names ignore case: "content-type" replaces the default, it does not add a second one.
            for key in [k for k in base if k.lower() == lower]:
                del base[key]
            base[name] = value
        self._url_auth: Optional[str] = None
        if credentials is not None:
            if any(k.lower() == "authorization" for k in base):
                raise ValueError("the URL holds credentials and headers= an Authorization header: give one of them")
            import base64

            self._url_auth = "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
            base["Authorization"] = self._url_auth
        #: The headers every attempt shares (prepare() adds the per-attempt ones).
        self.base_headers = base
        request_line = "POST " + (parts.path or "/") + (f"?{parts.query}" if parts.query else "") + " HTTP/1.1\r\n"
        host_line = f"Host: {_host_header(parts.hostname, port, default_port)}\r\n"
        head = request_line + ("" if any(k.lower() == "host" for k in base) else host_line)
        head += "Accept-Encoding: identity\r\n"  # as http.client sent: no compressed answers
        head += "".join(f"{k}: {v}\r\n" for k, v in base.items())
        try:
            self._head = head.encode("latin-1")
            self._relay_head = (request_line + host_line).encode("latin-1")
        except UnicodeEncodeError as e:
            raise ValueError(f"a header or the URL's path is not latin-1 text: {e.object[e.start:e.end + 20]!r}") from None

    def attempt_headers(self, body: bytes, msg_id: str, event: Optional[str], ts: int) -> Dict[str, str]:
        """The headers that change with each attempt: id, timestamp, signature, GitHub's."""
        headers = {"webhook-id": msg_id}
        if self.signer is not None:
            headers.update(self.signer.sign(body, msg_id, ts))
        if self.scheme == "standard" or self.signer is None:
            headers["webhook-timestamp"] = str(ts)
        if self.scheme == "github":
            if event:
                headers["X-GitHub-Event"] = event
            headers["X-GitHub-Delivery"] = msg_id
        return headers

    def request(self, body: bytes, msg_id: str, event: Optional[str]) -> bytes:
        """The bytes of one attempt, to write at once: request line, headers (fresh timestamp and signature), body."""
        own = self.attempt_headers(body, msg_id, event, int(time.time()))
        lines = "".join([f"{k}: {v}\r\n" for k, v in own.items()])
        return b"".join((self._head, lines.encode("latin-1"), b"Content-Length: %d\r\n\r\n" % len(body), body))

    def relay(self, body: bytes, headers: Mapping[str, str]) -> Tuple[bytes, str]:
        """The bytes of a relayed request (see ``Sender.relay``), and the message id its headers carry."""
        lines = []
        msg_id = ""
        auth = self._url_auth
        for name, value in headers.items():
            lower = str(name).lower()
            check_name(name)
            check_value(f"header {name!r}", value)
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
        return b"".join((self._relay_head, "".join(lines).encode("latin-1"), body)), msg_id


def judge(d: Delivery, status: int, reason: str, headers: Dict[str, str], body: bytes) -> Delivery:
    """Fill ``d`` from an answer: ok for 2xx; otherwise the error in words and whether to retry."""
    d.status, d.response_body, d.response_headers = status, body, headers
    if 200 <= status < 300:
        d.ok = True
        return d
    reason = reason[:200]
    if 300 <= status < 400:
        where = headers.get("location")
        error = f"{status} {reason}: redirect" + (f" to {where[:200]}" if where else "") + " not followed (use the final URL)"
    elif status == 410:
        error = f"{status} {reason}".strip() + ": the receiver says this endpoint is gone"
    else:
        error = f"{status} {reason}".strip()
        d.retryable = status in RETRY_STATUSES
        d.retry_after = parse_retry_after(headers.get("retry-after"))
    # The server's words go to logs, terminals and outbox rows: no control characters.
    d.error = printable(error)
    return d


def failed(d: Delivery, exc: BaseException, timeout: Timeout) -> Delivery:
    """Fill ``d`` from a transport error: the error in words and whether to retry."""
    error, d.retryable = describe(exc, timeout)
    d.error = printable(error)
    return d
