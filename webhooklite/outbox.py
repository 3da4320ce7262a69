"""Durable sending: an outbox on sqlite or PostgreSQL, fan-out to endpoints, delivery workers.

    outbox = Outbox("webhooks.db")                 # or Outbox("postgresql://app@db/app"), or connect=...
    outbox.add_endpoint("https://example.com/hooks", secret="whsec_...", events=["payment.*"])
    outbox.send("payment.completed", {"order_id": "ABC123"})   # committed when it returns
    outbox.start()                                             # deliver in background threads
    outbox.drain(timeout=30); outbox.stop()

The parts: this module is the public API (Outbox, Endpoint, DeliveryRecord, Attempt);
``engine.py`` runs the workers (threads, dispatcher, leases, pacing: no SQL); ``outbox_store.py``
is the outbox's tables, calling the named queries of ``backends/sqlite.py`` or
``backends/postgres.py``.

How it stays correct (read this before changing the SQL; it holds on both databases):

- ``send`` inserts the message and one delivery per matching endpoint (enabled or not: a paused
  endpoint's deliveries wait) in one transaction (fan-out at send time), committed before it
  returns; with ``conn=`` it writes in the caller's transaction instead and commits nothing.
- A worker *claims* due deliveries in one transaction that writes its token into ``worker`` and
  moves ``next_at`` to the end of its lease, so a claimed delivery is not due for anyone else
  until the lease runs out. Two claims never overlap: sqlite runs them under ``BEGIN IMMEDIATE``
  (one writer at a time per file); PostgreSQL picks rows ``FOR UPDATE SKIP LOCKED`` (rows another
  claim has locked are skipped, and a row changed meanwhile is re-checked on its newest version).
- While it holds a claim (queued or in flight) the worker renews the lease every ``lease/3``
  seconds. A worker that dies stops renewing; when its lease ends the delivery is due again and
  another worker takes it over. A worker never *starts* an attempt its lease might not cover
  (renewals failed, say the database was down): it drops that claim and lets the lease run out.
- The outcome is written afterwards. A success marks the delivery delivered whoever holds it
  now; a failure reschedules it only if the worker still owns the claim (the same token), so a
  worker that lost its lease cannot undo a newer worker's work.
- Ordering keys: a delivery with a ``key`` is claimable only when no earlier delivery to the same
  endpoint with that key is still pending (claimed ones are pending too): one at a time, in send
  (id) order; the next waits until the previous is delivered or dead.
- Delivery is at-least-once: a crash after a request was sent but before its outcome was
  written means it is sent again. It carries the same message id (``webhook-id``) every time, for
  every endpoint, so receivers dedupe. A worker frozen for longer than its lease (SIGSTOP, a
  swapped-out VM) or hosts whose clocks disagree by more than about two thirds of the lease lose
  claims the same way: "never twice at once" holds while workers renew and clocks agree (NTP).

- Endpoint health: each endpoint row keeps its last success and the start of its failing streak
  (the first failed attempt since), written with the outcomes. An endpoint whose every attempt
  failed for ``disable_after`` seconds is disabled by a conditional UPDATE (``... AND enabled``):
  whichever process gets there first records it, once, and only that process calls
  ``on_disabled``. Its deliveries wait, as for any disabled endpoint.

Threads: ``workers`` threads only send (no database); one dispatcher thread per process does
every write of the workers, in batches: outcomes recorded and claims topped up in one transaction,
with multi-row statements. That keeps delivery within reach of a bare Sender. The callbacks run
on a thread of their own (``_callbacks.py``), fed by the dispatcher after each commit. The clock
is ``time.time()`` (wall clock): workers in several processes, and on several hosts, compare
times stored in the database.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, Union

from ._callbacks import CallbackThread
from ._signals import until_stopped
from .backends import Backend, StorageError, open_backend
from .engine import DEAD, DONE, Engine, Job, Outcome, Settled, _retry_after_cap
from .events import encode_event
from .metrics import DURATION_BUCKETS, Counter, Gauge, Histogram, render
from .outbox_store import (
    DEAD_STATE, DELIVERED, DIED, DISABLED, PENDING, SNIPPET, OutboxStore, dump_secret, load_secret,
)
from .sender import Retry, Sender
from .signing import new_message_id
from .store import _after_fork_in_child

if TYPE_CHECKING:
    from .signing import Secret

__all__ = ["Outbox", "Endpoint", "DeliveryRecord", "Attempt", "DEFAULT_SCHEDULE", "DISABLE_AFTER", "StorageError",
           "SNIPPET"]

log = logging.getLogger("webhooklite")

#: The Standard Webhooks retry schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
DEFAULT_SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
#: An endpoint failing on every attempt for this long is disabled (Svix's five days).
DISABLE_AFTER = 5 * 86400.0
#: What update_endpoint() may change.
_CHANGEABLE = ("url", "secret", "events", "scheme", "headers", "timeout")
_UNSET: Any = object()


class Endpoint:
    """An endpoint as stored in the outbox (its secret is kept but not shown)."""

    __slots__ = ("id", "url", "events", "scheme", "headers", "timeout", "enabled", "disabled_reason", "created",
                 "tenant", "last_success", "failing_since")

    def __init__(self, row: Tuple[Any, ...]) -> None:
        id, url, events, scheme, headers, timeout, enabled, reason, created, tenant, last_success, failing = row
        #: The endpoint's id in the outbox.
        self.id: int = id
        #: Where its deliveries are POSTed.
        self.url: str = url
        #: The event-type patterns it receives (``"*"``, ``"payment.*"``...).
        self.events: Tuple[str, ...] = tuple(json.loads(events))
        #: Its signing scheme.
        self.scheme: str = scheme
        #: Extra request headers.
        self.headers: Dict[str, str] = json.loads(headers)
        #: Seconds one attempt may take.
        self.timeout: float = timeout
        #: False once disabled (by hand, by a 410 Gone answer, or after ``disable_after`` of failures):
        #: its deliveries then wait.
        self.enabled: bool = bool(enabled)
        #: Why it was disabled, or None.
        self.disabled_reason: Optional[str] = reason
        #: When it was added (unix seconds).
        self.created: float = created
        #: Its tenant, or None.
        self.tenant: Optional[str] = tenant or None
        #: When its newest successful attempt started (unix seconds), or None.
        self.last_success: Optional[float] = last_success
        #: When its current run of failures began (the first failed attempt since the last success), or None.
        self.failing_since: Optional[float] = failing

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else f"disabled: {self.disabled_reason}"
        who = f" tenant={self.tenant!r}" if self.tenant else ""
        return f"<Endpoint {self.id} {self.url!r}{who} events={list(self.events)} {state}>"


class DeliveryRecord:
    """One message for one endpoint, as stored: its state and last outcome."""

    __slots__ = (
        "id", "message_id", "endpoint_id", "url", "event", "state", "attempts", "tries",
        "next_at", "last_status", "last_error", "created", "updated", "body", "tenant", "key",
    )

    def __init__(self, row: Tuple[Any, ...]) -> None:
        (self.id, self.message_id, self.endpoint_id, self.url, self.event, self.state, self.attempts,
         self.tries, self.next_at, self.last_status, self.last_error, self.created, self.updated,
         body, tenant, self.key) = row
        #: The stored body, exactly as sent.
        self.body: bytes = bytes(body) if body is not None else b""
        #: The message's tenant, or None.
        self.tenant: Optional[str] = tenant or None

    def __repr__(self) -> str:
        last = f" last={self.last_status or self.last_error!r}" if (self.last_status or self.last_error) else ""
        return (
            f"<DeliveryRecord {self.id} {self.message_id} {self.event!r} -> endpoint {self.endpoint_id} "
            f"{self.state} attempts={self.attempts}{last}>"
        )


class Attempt:
    """One logged attempt: when, the status (None when no answer), how long, the answer's start, the error."""

    __slots__ = ("at", "status", "duration", "response", "error", "worker")

    def __init__(self, row: Tuple[Any, ...]) -> None:
        self.at, self.status, self.duration, response, self.error, self.worker = row
        #: At most the first 1 KiB of the response body.
        self.response: bytes = bytes(response) if response is not None else b""

    def __repr__(self) -> str:
        return f"<Attempt status={self.status} {self.duration * 1000:.1f} ms error={self.error!r}>"


def _when(since: Union[float, datetime.datetime]) -> float:
    """Unix seconds from seconds or an aware datetime."""
    if isinstance(since, datetime.datetime):
        if since.tzinfo is None:
            raise ValueError("give an aware datetime (with tzinfo) or unix seconds")
        return since.timestamp()
    if isinstance(since, bool) or not isinstance(since, (int, float)):
        raise TypeError("since is unix seconds or an aware datetime")
    return float(since)


def _tenant(tenant: Optional[str]) -> str:
    """A tenant as stored: '' is "no tenant"."""
    if tenant is None:
        return ""
    if not isinstance(tenant, str) or not tenant or any(c in tenant for c in "\r\n\x00"):
        raise ValueError("a tenant is a non-empty string (or None for no tenant)")
    return tenant


def _dbapi(conn: Any) -> Any:
    """The DB-API connection inside a framework's: Django's ``connection``, SQLAlchemy's ``Connection``."""
    if hasattr(conn, "ensure_connection") and hasattr(conn, "connection"):  # Django's DatabaseWrapper
        conn.ensure_connection()
        return conn.connection
    if type(conn).__module__.startswith("sqlalchemy"):
        proxy = conn.connection  # the pool's wrapper of the driver's connection
        return getattr(proxy, "dbapi_connection", None) or proxy.connection
    return conn


class Outbox:
    """A durable queue of webhooks, delivered to the endpoints stored with it.

    ``path`` is a sqlite3 file (``"webhooks.db"``) or a ``postgresql://`` URL; or give
    ``connect=``, a function returning a new DB-API connection (sqlite3, psycopg 3, psycopg2).
    On PostgreSQL the tables (all ``webhooklite_*``) can live in your application's database,
    workers on many hosts share them, and ``send(..., conn=c)`` writes in your own transaction.

    ``send()`` returns once the message is committed, so it survives a crash of the process at
    any point; workers (:meth:`start`, or :meth:`run` in a process of its own) deliver it once to
    every endpoint whose patterns match its type, retrying on ``schedule`` (one entry per attempt:
    the delay before it, from the previous attempt, ±``jitter``), then park it as dead.

    ``workers`` threads send; at most ``per_endpoint`` of them (default: half) work for one
    endpoint, so a slow one never holds them all. ``lease`` is how long a claim lasts without
    renewal (a crashed worker's deliveries are taken over after it); it must be longer than
    ``timeout``, the seconds one attempt may take (an endpoint can set its own). ``poll`` is how
    often an idle worker looks for work sent by other processes (on PostgreSQL a send also wakes
    it at once). ``block_private=True`` (with ``allow_networks``) turns on the Sender's SSRF guard
    for every endpoint: use it when users type in the endpoint URLs.

    ``disable_after`` (five days; None: never) disables an endpoint whose every attempt failed for
    that long, with no success between; its deliveries wait until it is enabled again.
    ``on_disabled(endpoint, reason)`` is called when an endpoint is disabled by a 410 Gone or by
    ``disable_after``, and ``on_dead(delivery)`` when a delivery dies (its last attempt failed, or
    its endpoint answered 410): each once, by the process that recorded it, from a thread of its
    own. An exception in one is logged; nothing is lost (see ``_callbacks.py``).
    """

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]", None] = None,
        *,
        connect: Optional[Any] = None,
        schedule: Sequence[float] = DEFAULT_SCHEDULE,
        workers: int = 4,
        lease: float = 60.0,
        timeout: float = 10.0,
        per_endpoint: Optional[int] = None,
        poll: float = 0.5,
        jitter: float = 0.2,
        block_private: bool = False,
        allow_networks: Iterable[str] = (),
        disable_after: Optional[float] = DISABLE_AFTER,
        on_disabled: Optional[Callable[[Endpoint, str], Any]] = None,
        on_dead: Optional[Callable[[DeliveryRecord], Any]] = None,
    ) -> None:
        schedule = tuple(float(s) for s in schedule)
        if not schedule or any(s < 0 for s in schedule):
            raise ValueError("schedule is a non-empty list of delays in seconds, each >= 0")
        if workers < 1:
            raise ValueError("workers is at least 1")
        if per_endpoint is None:
            per_endpoint = max(1, workers // 2)
        if not 1 <= per_endpoint <= workers:
            raise ValueError("per_endpoint is from 1 to workers")
        if timeout <= 0:
            raise ValueError("timeout is a positive number of seconds")
        if lease <= timeout:
            raise ValueError(
                f"lease ({lease:g} s) must be longer than the send timeout ({timeout:g} s): "
                "otherwise another worker could take over a delivery that is still being sent"
            )
        if poll <= 0 or not 0 <= jitter < 1:
            raise ValueError("poll is > 0 seconds; jitter is a fraction from 0 to 1")
        if disable_after is not None and not disable_after > 0:
            raise ValueError("disable_after is a number of seconds > 0, or None (never disable)")
        for name, fn in (("on_disabled", on_disabled), ("on_dead", on_dead)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} is a function (or None)")
        # The Sender's SSRF guard, for endpoint URLs that users type in (see Sender).
        self._guard: Dict[str, Any] = {}
        if block_private:
            self._guard = {"block_private": True, "allow_networks": tuple(allow_networks)}
        elif allow_networks:
            raise ValueError("allow_networks is an option of block_private=True")
        #: The storage: a SQLiteBackend or a PostgresBackend.
        self.backend: Backend = open_backend(path, connect)
        #: The sqlite file or the PostgreSQL URL (without its password).
        self.path = self.backend.where
        #: Delay before each attempt, from the previous one (the first from the send).
        self.schedule: Tuple[float, ...] = schedule
        #: Delivery threads.
        self.workers = workers
        #: Most threads working for one endpoint at once.
        self.per_endpoint = per_endpoint
        #: Seconds a claim lasts without renewal.
        self.lease = float(lease)
        #: Default seconds one attempt may take.
        self.timeout = float(timeout)
        #: Seconds between looks for work from other processes.
        self.poll = float(poll)
        #: Fraction of random spread on each delay (0.2 is ±20%).
        self.jitter = float(jitter)
        #: Seconds of nothing but failed attempts after which an endpoint is disabled (None: never).
        self.disable_after = None if disable_after is None else float(disable_after)
        #: Called with (Endpoint, reason) when a 410 or ``disable_after`` disables an endpoint.
        self.on_disabled = on_disabled
        #: Called with the DeliveryRecord of each delivery that dies.
        self.on_dead = on_dead
        self._store = OutboxStore(self.backend, self._lane_config, self.disable_after, self._close_senders)
        self._senders: Dict[int, Tuple[int, Sender]] = {}
        self._senders_lock = threading.Lock()
        self._capped: Set[int] = set()  # endpoints whose stored timeout this lease does not cover
        self._engine = Engine(
            self._store, self._attempt, schedule=schedule, workers=workers, per_lane=per_endpoint,
            lease=self.lease, poll=self.poll, jitter=self.jitter, name="outbox", on_settled=self._settled,
        )
        self._closed = False
        self._init_counts()
        self._callbacks = CallbackThread("webhooklite-outbox-callbacks")
        self._init_api()
        self._api_conn: Any = self.backend.connect(durable=True)
        try:
            self.backend.ensure_schema(self._api_conn, "outbox")
        except BaseException:  # e.g. written by a newer webhooklite: do not leak the connection
            self.backend.close(self._api_conn)
            raise
        _after_fork_in_child(self, Outbox._forked)

    def _init_api(self) -> None:
        self._api_lock = threading.RLock()
        self._batch_depth = 0

    def _init_counts(self) -> None:
        """This process's counts for :meth:`metrics` (a child after fork() starts from zero)."""
        self._attempt_count = Counter("webhooklite_outbox_attempts_total",
                                      "Attempts this process made, by endpoint and what came of them.",
                                      ("endpoint", "outcome"))
        self._durations = Histogram("webhooklite_outbox_attempt_duration_seconds",
                                    "How long this process's attempts took, by endpoint.", ("endpoint",),
                                    DURATION_BUCKETS)

    def _forked(self) -> None:
        """In a child process after fork() (gunicorn --preload...): no workers, and its own connection."""
        if self._api_conn is not None:
            self.backend.abandon(self._api_conn)  # the parent's: never used (nor closed) here
        self._api_conn = None  # opened on first use
        self._init_api()
        self._init_counts()
        self._callbacks.reset()
        self._senders = {}
        self._senders_lock = threading.Lock()
        self._engine.reset()

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        """The API connection, under its lock; replaced on next use when the server dropped it."""
        with self._api_lock:
            if self._api_conn is None:
                if self._closed:
                    raise RuntimeError("this Outbox is closed")
                self._api_conn = self.backend.connect(durable=True)
            try:
                yield self._api_conn
            except StorageError as e:
                if self._batch_depth == 0 and self._api_conn is not None and self.backend.unusable(self._api_conn, e):
                    self.backend.close(self._api_conn)
                    self._api_conn = None
                raise

    @contextmanager
    def _writing(self) -> Iterator[Any]:
        """A write transaction on the API connection (or the open batch's); on a new one if the server
        dropped it while idle (the first send after a PostgreSQL restart does not fail for that)."""
        with self._conn() as c:
            if self._batch_depth:
                yield c
            else:
                with self.backend.transaction(c, reconnect=self._reconnect) as c:
                    yield c

    def _reconnect(self) -> Any:
        """(Under the API lock) replace the API connection, lost while idle."""
        lost, self._api_conn = self._api_conn, None  # the server still down: the next use tries again
        self.backend.close(lost)
        self._api_conn = self.backend.connect(durable=True)
        return self._api_conn

    @property
    def running(self) -> bool:
        """Whether this process's workers are delivering."""
        return self._engine.running

    _running = running

    def __repr__(self) -> str:
        return f"Outbox({self.path!r}, workers={self.workers}, running={self._engine.running})"

    def __enter__(self) -> "Outbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- sending ---------------------------------------------------------------------

    def send(self, event: str, data: Any = None, *, id: Optional[str] = None, tenant: Optional[str] = None,
             key: Optional[str] = None, conn: Any = None) -> str:
        """Store ``event`` for every matching endpoint; return the message id once it is committed.

        The body is encoded now (the webhooklite envelope), once. ``id`` sets the message id
        (``webhook-id``); sending an id that is already in the outbox does nothing, so a retried
        ``send`` cannot duplicate a message. ``tenant``: only that tenant's endpoints get it
        (without one, only endpoints without a tenant). ``key``: deliveries to one endpoint that
        share a key go out one at a time, in send order. ``conn``: your open DB-API connection to
        the same database (or Django's ``connection``, or a SQLAlchemy ``Connection``): the
        message is written in your transaction and exists if and only if you commit it.

        A database failure raises :class:`StorageError` (nothing stored; except when the
        connection was lost during COMMIT itself, when it may have been: resend with the same ``id``).
        """
        return self._enqueue([(event, encode_event(event, data), id, key)], tenant, conn)[0]

    def send_many(self, items: Iterable[Tuple[str, Any]], *, tenant: Optional[str] = None, conn: Any = None) -> List[str]:
        """Store many ``(event, data)`` pairs in one transaction; return their ids."""
        return self._enqueue([(event, encode_event(event, data), None, None) for event, data in items], tenant, conn)

    @contextmanager
    def batch(self) -> Iterator["Outbox"]:
        """Make every ``send`` in the block one transaction (all or none on an exception, or a failed COMMIT).

        On sqlite the file's write lock is held for the whole block: keep it short. A send that raises
        StorageError inside the block, caught there: on PostgreSQL the failed statement has aborted the
        transaction, so the block's end raises StorageError too, and nothing in it is stored.
        """
        b = self.backend
        with self._conn() as c:
            if self._batch_depth == 0:
                b.begin(c)
            self._batch_depth += 1
            ok = False
            try:
                yield self
                ok = True
            finally:
                self._batch_depth -= 1
                if self._batch_depth == 0:
                    if ok:
                        b.commit(c)  # rolls back, then raises, when COMMIT fails
                    else:
                        b.rollback(c)
            if ok and self._batch_depth == 0:
                self._engine.wake()

    def _enqueue(self, items: List[Tuple[str, bytes, Optional[str], Optional[str]]], tenant: Optional[str],
                 conn: Any) -> List[str]:
        who = _tenant(tenant)
        ready: List[Tuple[str, bytes, str, Optional[str]]] = []
        for event, body, msg_id, key in items:
            if msg_id is None:
                msg_id = new_message_id()
            elif not isinstance(msg_id, str) or not msg_id or any(c in msg_id for c in "\r\n\x00"):
                raise ValueError("a message id is a non-empty string without CR, LF or NUL")
            if key is not None and (not isinstance(key, str) or not key):
                raise ValueError("an ordering key is a non-empty string (or None)")
            ready.append((event, body, msg_id, key))
        first = lambda: self._delay(0)  # noqa: E731
        if conn is not None:
            self._store.enqueue(self.backend.adopt(_dbapi(conn)), ready, who, first)  # the caller commits
        else:
            with self._writing() as c:
                self._store.enqueue(c, ready, who, first)
        self._engine.wake()
        return [item[2] for item in ready]

    def _delay(self, n: int, retry_after: Optional[float] = None) -> float:
        """Seconds before attempt ``n + 1`` (``n`` made), jittered, never sooner than a Retry-After.

        A Retry-After counts up to a day (or the schedule's longest delay, if longer): a hostile
        answer cannot park a message for ever.
        """
        return self._engine.delay(n, retry_after, _retry_after_cap(self.schedule))

    # -- endpoints -----------------------------------------------------------------------

    def add_endpoint(
        self,
        url: str,
        secret: Optional[Secret] = None,
        *,
        events: Optional[Iterable[str]] = None,
        tenant: Optional[str] = None,
        scheme: Optional[str] = None,
        headers: Optional[Dict[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> int:
        """Add an endpoint, or update (and enable) the one with this URL and tenant; return its id.

        On an update only what this call passes changes: a secret, scheme, header or timeout set
        before is kept (so it is safe at every start of your app). ``events`` are shell-style
        patterns (default ``["*"]``: every event). Only messages sent from now on are delivered to
        it. ``update_endpoint`` changes an endpoint by id, secret=None included.
        """
        who = _tenant(tenant)
        passed = {"secret": secret, "events": events, "scheme": scheme, "headers": headers, "timeout": timeout}
        with self._writing() as c:
            row = self._store.find_endpoint(c, who, url)
            if row is None:
                config = self._config(url, {"secret": None, "events": ["*"], "scheme": "standard", "headers": {},
                                            "timeout": self.timeout}, passed)
                self._store.insert_endpoint(c, who, url, config)
                row = self._store.find_endpoint(c, who, url)
                assert row is not None
            else:
                self._store.update_endpoint(c, row[0], self._config(url, self._current(row), passed))
                self._store.set_enabled(c, row[0], True)
            self._store.notify(c)
        self._engine.wake()
        return int(row[0])

    def update_endpoint(self, endpoint: Union[int, str], **changes: Any) -> Endpoint:
        """Change what is passed (``url``, ``secret``, ``events``, ``scheme``, ``headers``, ``timeout``); keep the rest.

        ``secret=None`` makes it unsigned. Returns the endpoint as stored now.
        """
        unknown = set(changes) - set(_CHANGEABLE)
        if unknown:
            raise TypeError(f"update_endpoint() can change {', '.join(_CHANGEABLE)}; not {', '.join(sorted(unknown))}")
        with self._writing() as c:
            eid = self._store.endpoint_id(c, endpoint)
            row = self._store.endpoint_config(c, eid)
            assert row is not None
            url = str(changes.get("url", row[2]))
            other = self._store.find_endpoint(c, row[1], url)
            if other is not None and other[0] != eid:
                raise ValueError(f"endpoint {other[0]} already has the URL {url!r}")
            current = self._current(row)
            current.update({k: v for k, v in changes.items() if k != "url"})
            self._store.update_endpoint(c, eid, self._config(url, current, {}))
        self._engine.wake()  # a round now gives deliveries already claimed here the new URL, secret, headers
        return next(e for e in self.endpoints() if e.id == eid)

    @staticmethod
    def _current(row: Tuple[Any, ...]) -> Dict[str, Any]:
        _, _, _, secret, scheme, events, headers, timeout, _ = row
        return {"secret": load_secret(secret), "events": json.loads(events), "scheme": scheme,
                "headers": json.loads(headers), "timeout": timeout}

    def _config(self, url: str, base: Dict[str, Any], passed: Dict[str, Any]) -> Dict[str, Any]:
        """The stored form of an endpoint's config: ``base`` overridden by what was passed (not None), checked."""
        merged = dict(base)
        merged.update({k: v for k, v in passed.items() if v is not None})
        events = merged["events"]
        patterns = [events] if isinstance(events, str) else list(events)
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise ValueError("events is a list of non-empty patterns such as ['payment.*'] or ['*']")
        timeout = float(merged["timeout"])
        if not 0 < timeout < self.lease:
            raise ValueError(f"timeout is > 0 and shorter than the lease ({self.lease:g} s)")
        # Building a Sender checks the URL, secret, scheme and headers now, not at the first delivery.
        Sender(url, merged["secret"], scheme=merged["scheme"], timeout=timeout, retry=Retry(attempts=1),
               headers=merged["headers"], **self._guard).close()
        return {"url": url, "secret": dump_secret(merged["secret"]), "scheme": merged["scheme"],
                "events": json.dumps(patterns), "headers": json.dumps(dict(merged["headers"] or {})),
                "timeout": timeout}

    def endpoints(self) -> List[Endpoint]:
        """Every endpoint, enabled or not, oldest first."""
        with self._conn() as c:
            return [Endpoint(r) for r in self._store.endpoints(c)]

    def disable_endpoint(self, endpoint: Union[int, str], reason: str = "disabled by hand") -> None:
        """Pause an endpoint (by id or URL): its deliveries, and those sent meanwhile, wait until it is enabled."""
        with self._writing() as c:
            self._store.set_enabled(c, self._store.endpoint_id(c, endpoint), False, reason)

    def enable_endpoint(self, endpoint: Union[int, str]) -> None:
        """Deliver to an endpoint again (by id or URL), including everything that waited while it was disabled."""
        with self._writing() as c:
            self._store.set_enabled(c, self._store.endpoint_id(c, endpoint), True)
            self._store.notify(c)
        self._engine.wake()

    def remove_endpoint(self, endpoint: Union[int, str]) -> None:
        """Delete an endpoint (by id or URL) with its deliveries and their attempt log."""
        with self._writing() as c:
            self._store.remove_endpoint(c, self._store.endpoint_id(c, endpoint))

    # -- inspecting and retrying -------------------------------------------------------

    def deliveries(
        self,
        state: Optional[str] = None,
        *,
        endpoint: Union[int, str, None] = None,
        message_id: Optional[str] = None,
        limit: int = 100,
        before: Optional[int] = None,
    ) -> List[DeliveryRecord]:
        """Stored deliveries, newest first: filter by ``state`` ("pending", "delivered", "dead"),
        ``endpoint`` (id or URL) or ``message_id``. ``before=id`` pages on: the ``limit`` next
        older than that delivery (give the last id of the previous page)."""
        if state is not None and state not in (PENDING, DELIVERED, DEAD_STATE):
            raise ValueError("state is 'pending', 'delivered' or 'dead'")
        with self._conn() as c:
            eid = None if endpoint is None else self._store.endpoint_id(c, endpoint)
            rows = self._store.deliveries(c, state, eid, message_id, limit, None if before is None else int(before))
            return [DeliveryRecord(r) for r in rows]

    def dead(self, *, endpoint: Union[int, str, None] = None, limit: int = 100) -> List[DeliveryRecord]:
        """Deliveries that failed for good (every attempt failed, or the endpoint answered 410)."""
        return self.deliveries(DEAD_STATE, endpoint=endpoint, limit=limit)

    def delivery(self, delivery_id: int) -> DeliveryRecord:
        """One delivery by id (KeyError when there is none)."""
        with self._conn() as c:
            row = self._store.delivery(c, int(delivery_id))
        if row is None:
            raise KeyError(f"no delivery {delivery_id!r} in this outbox")
        return DeliveryRecord(row)

    def attempts(self, delivery_id: int) -> List[Attempt]:
        """Every logged attempt of a delivery, oldest first."""
        with self._conn() as c:
            return [Attempt(r) for r in self._store.attempts(c, int(delivery_id))]

    def retry(self, delivery_id: int) -> bool:
        """Send a dead (or delivered) delivery again, now, with a fresh schedule and the same message id.

        Its endpoint must be enabled (``enable_endpoint`` first after a 410: ValueError otherwise;
        KeyError for no such delivery). A pending delivery waiting for its next attempt is attempted
        now (its schedule goes on from where it was); one being sent is left as it is (False).
        """
        with self._writing() as c:
            changed = self._store.retry(c, int(delivery_id))
            if changed:
                self._store.notify(c)
        self._engine.wake()
        return changed

    def recover(self, since: Union[float, datetime.datetime], *, endpoint: Union[int, str, None] = None) -> int:
        """Send again every dead delivery that died since ``since`` (unix seconds, or an aware datetime):
        the same message ids, due now, each with a fresh schedule. Returns how many.

        With ``endpoint`` (id or URL), only that endpoint's; it must be enabled (ValueError otherwise,
        and nothing changes). Without, the dead deliveries of disabled endpoints stay dead (logged
        as a WARNING with their count): enable those first. "Died" is when the delivery was last
        changed: its last attempt, or the 410 that buried it.
        """
        n, skipped = self._recover(_when(since), endpoint)
        for eid, left in sorted(skipped.items()):
            log.warning("outbox: recover() left %d dead delivery(ies) of disabled endpoint %s: enable it first",
                        left, eid)
        return n

    def _recover(self, since: float, endpoint: Union[int, str, None]) -> Tuple[int, Dict[int, int]]:
        """recover(), and what it left: {endpoint id: dead deliveries left} (the CLI says so)."""
        with self._writing() as c:
            eid = None if endpoint is None else self._store.endpoint_id(c, endpoint)
            n, skipped = self._store.recover(c, since, eid)
            if n:
                self._store.notify(c)
        self._engine.wake()
        return n, skipped

    def stats(self) -> Dict[int, Dict[str, Any]]:
        """Per endpoint id, what a status page shows:

        - ``url``, ``enabled``, ``disabled_reason`` (None while enabled), ``tenant`` (when it has one);
        - ``pending``, ``delivered``, ``dead``: its deliveries by state;
        - ``last_success``: when its newest successful attempt started (unix seconds, or None), and
          ``failing_since``: when its current run of failed attempts began (None while healthy);
        - ``last_hour``: its attempts over the last hour (the newest 100,000 at most, however big the
          log): ``attempts``, ``succeeded`` (2xx), ``success_rate`` (0 to 1, None without attempts),
          ``p50`` and ``p99`` attempt durations in seconds (nearest rank; None without attempts).
        """
        with self._conn() as c:
            return self._store.stats(c)

    def metrics(self) -> str:
        """Prometheus text: this process's attempts (by endpoint and outcome: ``delivered``, ``failed``,
        ``dead``) and their durations, and from the database, pending and dead deliveries by endpoint
        and how many endpoints are disabled. Endpoints are labelled by id (a URL may hold a token)."""
        with self._conn() as c:
            enabled, counts = self._store.gauges(c)
        deliveries = Gauge("webhooklite_outbox_deliveries", "Deliveries pending and dead, by endpoint.",
                           ("endpoint", "state"))
        for eid in enabled:
            deliveries.set(0, str(eid), PENDING)
            deliveries.set(0, str(eid), DEAD_STATE)
        for eid, state, n in counts:
            deliveries.set(int(n), str(eid), state)
        disabled = Gauge("webhooklite_outbox_endpoints_disabled", "Endpoints disabled (by hand, 410, or failing).")
        disabled.set(sum(not on for on in enabled.values()))
        return render([self._attempt_count, self._durations, deliveries, disabled])

    def pending(self) -> int:
        """How many deliveries to enabled endpoints are not yet delivered or dead."""
        with self._conn() as c:
            return self._store.pending(c)

    def _any(self, due_only: bool = False) -> bool:
        with self._conn() as c:
            return self._store.any_pending(c, due_only)

    def purge(self, older_than: float = 7 * 86400) -> int:
        """Forget delivered deliveries (and their log) last touched more than ``older_than`` seconds ago.

        Returns how many were removed. Messages with no delivery left go too.
        """
        with self._writing() as c:
            return self._store.purge(c, time.time() - older_than)

    # -- workers -----------------------------------------------------------------------

    def start(self) -> "Outbox":
        """Deliver in background threads (``workers`` of them, plus one that claims and records)."""
        if self._closed:
            raise RuntimeError("this Outbox is closed")
        self._engine.start()
        return self

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop delivering: attempts in flight finish and are recorded; claims not started are handed back.

        When ``timeout`` runs out first, the attempts still in flight finish (and are recorded) in
        the background, and the outbox can be started again at once.
        """
        if self._engine.stop(timeout):
            with self._senders_lock:
                senders, self._senders = self._senders, {}
            for _, sender in senders.values():
                sender.close()

    def drain(self, timeout: Optional[float] = None, *, due_only: bool = False) -> bool:
        """Deliver until nothing is pending; True then, False when ``timeout`` ran out first.

        "Pending" includes retries scheduled for later, so with the default schedule a failing
        endpoint keeps ``drain()`` waiting for hours: give a ``timeout``. ``due_only=True`` is
        "deliver what is due now, then return": it returns True as soon as no delivery is due
        (the rest are scheduled for later, or held by another live worker) and this process has
        nothing in flight: a worker run from cron is ``Outbox(path).drain(due_only=True, timeout=...)``.
        Deliveries to disabled endpoints wait and are not counted. When the workers are not
        running they are started for the time of the call.
        """
        if due_only:
            return self._engine.drain(lambda: self._any(True) or self._engine.busy(), timeout)
        return self._engine.drain(self._any, timeout)

    def run(self) -> None:
        """Deliver until Ctrl-C or SIGTERM (or :meth:`stop` from another thread), then stop cleanly.

        For a worker process of its own: ``Outbox("webhooks.db").run()``.
        """
        try:
            with until_stopped():
                self.start()  # inside: a SIGTERM may come while the threads start
                while not self._engine.wait_stopped(1.0):
                    pass
        finally:
            self.stop()

    def close(self) -> None:
        """Stop the workers, run the callbacks still queued (for up to 5 s), and close the connection."""
        self.stop()
        if not self._callbacks.wait_idle(5.0):
            log.warning("outbox: close() did not wait for the callbacks still running (over 5 s)")
        with self._api_lock:
            if not self._closed:
                self._closed = True
                if self._api_conn is not None:
                    self.backend.close(self._api_conn)
                    self._api_conn = None

    # -- what the engine calls ------------------------------------------------------------

    def _settled(self, settled: List[Settled]) -> None:
        """The engine's hook, in the dispatcher after each committed round: count, and queue the callbacks."""
        reports = []
        counts: Dict[Tuple[str, str], int] = {}
        for s in settled:
            lane = str(s.job.lane)
            key = (lane, "delivered" if s.verdict == DONE else "dead" if s.verdict == DEAD else "failed")
            counts[key] = counts.get(key, 0) + 1
            self._durations.observe(s.outcome.elapsed, lane)
            reports += s.report
        for key, n in counts.items():
            self._attempt_count.inc(*key, by=n)
        if reports and (self.on_dead is not None or self.on_disabled is not None):
            self._callbacks.put(lambda: self._report(reports))

    def _report(self, reports: List[Tuple[Any, ...]]) -> None:
        """On the callback thread: read what the callbacks get, and call them (each on its own)."""
        on_dead, on_disabled = self.on_dead, self.on_disabled
        for report in reports:
            if report[0] == DISABLED and on_disabled is not None:
                _, eid, reason = report
                found = [e for e in self.endpoints() if e.id == eid]
                if found:
                    self._callbacks.call("on_disabled", on_disabled, found[0], reason)
            elif report[0] == DIED and on_dead is not None:
                ids = report[1]
                for i in range(0, len(ids), 500):
                    chunk = ids[i:i + 500]
                    with self._conn() as c:
                        rows = self._store.deliveries(c, None, None, None, len(chunk), ids=chunk)
                    for record in sorted((DeliveryRecord(r) for r in rows), key=lambda d: d.id):
                        self._callbacks.call("on_dead", on_dead, record)

    def _lane_config(self, row: Tuple[Any, ...]) -> Tuple[Sender, float]:
        """An enabled endpoint's Sender (rebuilt when its row's version changes) and its timeout.

        An endpoint stored by a process with a longer lease may have a timeout this process's lease
        does not cover: its attempts here get this outbox's ``timeout`` (a claim must outlast them).
        """
        eid, version, url, secret, scheme, headers, timeout = row
        if timeout >= self.lease:
            if eid not in self._capped:
                self._capped.add(eid)
                log.warning("outbox: endpoint %s's timeout (%g s) is not shorter than this outbox's lease (%g s): "
                            "its attempts here time out after %g s", eid, timeout, self.lease, self.timeout)
            timeout = self.timeout
        with self._senders_lock:
            cached = self._senders.get(eid)
            if cached is not None and cached[0] == version:
                return cached[1], timeout
            sender = Sender(
                url, load_secret(secret), scheme=scheme, timeout=timeout, retry=Retry(attempts=1),
                headers=json.loads(headers), **self._guard,
            )
            if cached is not None:
                cached[1].close()  # connections in flight are closed when they come back
            self._senders[eid] = (version, sender)
            return sender, timeout

    def _close_senders(self, enabled: Set[int]) -> None:
        """Close the Senders of endpoints no longer enabled (removed, disabled), and their kept-alive
        connections with them (one in flight is closed when it comes back)."""
        with self._senders_lock:
            gone = [self._senders.pop(eid)[1] for eid in [e for e in self._senders if e not in enabled]]
        for sender in gone:
            sender.close()

    @staticmethod
    def _attempt(job: Job) -> Outcome:
        sender: Sender = job.config
        message_id, event, body = job.data
        d = sender.attempt(body, message_id, event)
        return Outcome(d.ok, error=d.error, retry_after=d.retry_after, elapsed=d.elapsed,
                       close="410 Gone" if d.status == 410 else None, detail=d)
