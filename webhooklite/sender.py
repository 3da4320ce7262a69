"""Sending from threads: the Sender, and the one-shot ``send()``.

The rules (what an attempt puts on the wire, what an answer means, when to try
again) are in ``_wire``, shared with the AsyncSender; the connections (every
address of the host 250 ms apart under the connect budget, one ``sendall`` per
request, the answer read against the read budget) are in ``_connections``,
loaded with the first Sender. (urllib's ``urlopen`` sends ``Connection: close``
on every request; http.client has no connect budget across addresses and no
deadline for a whole response.)
"""
from __future__ import annotations

import time

from ._wire import (
    RESPONSE_CAP,
    RETRY_STATUSES,
    Delivery,
    Retry,
    Target,
    Timeout,
    check_value,
    describe,
    failed,
    judge,
    next_wait,
    parse_retry_after,
)
from .events import encode_event, encode_json
from .signing import new_message_id

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see webhooklite/__init__.py)
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Union

    from .signing import Secret

__all__ = ["Sender", "Delivery", "Retry", "Timeout", "RETRY_STATUSES", "RESPONSE_CAP", "send"]

#: Names other modules used before the split (cli.py imports _describe).
_describe = describe
_parse_retry_after = parse_retry_after
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
        target = Target(url, secret, scheme, headers)
        #: The URL every message is POSTed to (without the credentials it may have held).
        self.url = target.url
        #: The signing scheme name.
        self.scheme = scheme
        #: The connect and read budgets of one attempt (a number given is both).
        self.timeout = Timeout.of(timeout)
        #: The retry policy.
        self.retry = retry if retry is not None else Retry()
        #: Whether the SSRF guard is on (see the class docstring).
        self.block_private = block_private
        self._target = target
        from ._connections import Pool  # the sockets, loaded with the first Sender
        from .guard import guard_for

        self._pool = Pool(target, self.timeout, ssl_context, guard_for(block_private, allow_networks, resolver), resolver)

    def __repr__(self) -> str:
        return f"Sender({self._target.safe_url!r}, scheme={self.scheme!r}, signed={self._target.signer is not None})"

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
        headers = dict(self._target.base_headers)
        headers.update(self._target.attempt_headers(body, msg_id, event, ts))
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
        """POST any JSON as is, no envelope (Slack, Discord, your own format).

        Under ``scheme="stripe"`` give the payload its own ``"id"``: Stripe signs no id header,
        so a receiver dedupes on the body's ``id``, else on the signed timestamp and body (two
        identical payloads signed in the same second are then one message).
        """
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
        check_value("the message id", msg_id)
        if event is not None:
            check_value("the event type", event)
        start = time.monotonic()
        n = 0
        while True:
            n += 1
            d = self.attempt(body, msg_id, event)
            d.attempts = n
            d.elapsed = time.monotonic() - start
            wait = next_wait(self.retry, d, self._target.safe_url)
            if wait is None:
                return d
            if on_retry is not None:
                on_retry(d, wait)
            time.sleep(wait)

    def attempt(self, body: bytes, msg_id: str, event: Optional[str] = None) -> Delivery:
        """Make exactly one attempt (no retry); the Delivery says whether to retry."""
        return self._attempt(self._target.request(body, msg_id, event), Delivery(msg_id, self.url, attempts=1))

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
        request, msg_id = self._target.relay(body, headers)
        return self._attempt(request, Delivery(msg_id, self.url, attempts=1))

    def _attempt(self, request: bytes, d: Delivery) -> Delivery:
        start = time.monotonic()
        try:
            answer = self._pool.exchange(request)
        except Exception as exc:  # translated at the boundary: nothing escapes as a raw OSError
            failed(d, exc, self.timeout)
        else:
            judge(d, answer.status, answer.reason, answer.headers, answer.body)
        d.elapsed = time.monotonic() - start
        return d


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
