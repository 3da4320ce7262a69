"""Durable sending: an outbox in one sqlite3 file, fan-out to endpoints, delivery workers.

    outbox = Outbox("webhooks.db")
    outbox.add_endpoint("https://example.com/hooks", secret="whsec_...", events=["payment.*"])
    outbox.send("payment.completed", {"order_id": "ABC123"})   # on disk when it returns
    outbox.start()                                             # deliver in background threads
    outbox.drain(timeout=30); outbox.stop()

How it stays correct (read this before changing the SQL):

- ``send`` inserts the message and one delivery per matching enabled endpoint
  in one transaction (fan-out at send time), and commits before it returns.
- A worker *claims* due deliveries inside ``BEGIN IMMEDIATE`` (so two
  processes never claim the same row): it writes its token into ``worker``
  and moves ``next_at`` to the end of its lease. A claimed delivery is
  therefore not due for anyone else until the lease runs out. While it holds a
  claim (queued or in flight), the worker renews the lease every ``lease/3``
  seconds. A worker that dies stops renewing; when its lease ends the
  delivery is due again and another worker takes it over.
- The outcome is written afterwards. A success marks the delivery delivered
  whoever holds it now; a failure reschedules it only if the worker still owns
  the claim (the same token), so a worker that lost its lease cannot undo a
  newer worker's work.
- Delivery is at-least-once: a crash after a request was sent but before its
  outcome was written means it is sent again. It carries the same message id
  (``webhook-id``) every time, for every endpoint, so receivers dedupe. A
  worker frozen for longer than its lease (SIGSTOP, a swapped-out VM) loses
  its claims the same way: "never twice at once" holds while workers renew.

Threads: ``workers`` threads only send (no sqlite); one dispatcher thread does
every write of the workers, in batches: outcomes are recorded and claims topped
up in one transaction, with multi-row statements, when a queue runs low or
within ``_FLUSH_DELAY``. That keeps delivery within reach of a bare Sender.

The clock is ``time.time()`` (wall clock): workers in several processes
compare times stored in the file.
"""
import base64
import collections
import fnmatch
import json
import logging
import os
import random
import threading
import time
from contextlib import contextmanager
from typing import Any, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, Union

from ._signals import until_stopped
from .events import encode_event
from .sender import Delivery, Retry, Sender
from .signing import Secret, new_message_id
from .store import _ABANDONED, _after_fork_in_child, _open_sqlite

__all__ = ["Outbox", "Endpoint", "DeliveryRecord", "Attempt", "DEFAULT_SCHEDULE"]

log = logging.getLogger("webhooklite")

#: The Standard Webhooks retry schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
DEFAULT_SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
#: How much of a response body the attempt log keeps.
SNIPPET = 1024
#: Milliseconds a connection waits for another process's write lock before giving up.
BUSY_TIMEOUT_MS = 10_000

#: Claims a process holds per endpoint slot (queued or in flight): about _PREFETCH_SECONDS of work
#: at the endpoint's recent pace, from _PREFETCH_MIN to _PREFETCH_MAX (_PREFETCH before any is known).
#: Deep for a fast endpoint, so the threads never wait for the dispatcher; shallow for a slow one, so
#: other worker processes can share its backlog.
_PREFETCH, _PREFETCH_MIN, _PREFETCH_MAX, _PREFETCH_SECONDS = 16, 2, 64, 0.1
#: Outcomes waiting to be recorded that make the dispatcher record them at once...
_FLUSH_AT = 64
#: ...and the longest they wait otherwise (seconds).
_FLUSH_DELAY = 0.02

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoints (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    secret TEXT,
    scheme TEXT NOT NULL,
    events TEXT NOT NULL,
    headers TEXT NOT NULL,
    timeout REAL NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    version INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    endpoint_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    next_at REAL,
    worker TEXT,
    tries INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER,
    last_error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (endpoint_id, next_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (endpoint_id) WHERE state = 'dead';
CREATE INDEX IF NOT EXISTS deliveries_message ON deliveries (message_id);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL,
    at REAL NOT NULL,
    status INTEGER,
    duration REAL NOT NULL,
    response BLOB,
    error TEXT,
    worker TEXT
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id);
"""
_SCHEMA_VERSION = 1


def _connect(path: str, synchronous: str) -> Any:
    return _open_sqlite(path, synchronous, BUSY_TIMEOUT_MS / 1000)


@contextmanager
def _write(conn: Any) -> Iterator[Any]:
    """One write transaction; BEGIN IMMEDIATE takes the write lock up front (no upgrade deadlocks)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except Exception:  # already rolled back by sqlite itself
            pass
        raise
    try:
        conn.execute("COMMIT")
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except Exception:
            pass
        raise


def _dump_secret(secret: Optional[Secret]) -> Optional[str]:
    if secret is None:
        return None
    items = [secret] if isinstance(secret, (str, bytes)) else list(secret)
    return json.dumps([{"b64": base64.b64encode(s).decode()} if isinstance(s, bytes) else s for s in items])


def _load_secret(text: Optional[str]) -> Optional[Secret]:
    if text is None:
        return None
    items = [base64.b64decode(x["b64"]) if isinstance(x, dict) else x for x in json.loads(text)]
    return items[0] if len(items) == 1 else items


def _matches(patterns: Sequence[str], event: str) -> bool:
    for p in patterns:
        if p == event or (any(c in p for c in "*?[") and fnmatch.fnmatchcase(event, p)):
            return True
    return False


class Endpoint:
    """An endpoint as stored in the outbox (its secret is kept but not shown)."""

    __slots__ = ("id", "url", "events", "scheme", "headers", "timeout", "enabled", "disabled_reason", "created")

    def __init__(self, row: Tuple[Any, ...]) -> None:
        id, url, events, scheme, headers, timeout, enabled, reason, created = row
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
        #: False once disabled (by hand, or by a 410 Gone answer).
        self.enabled: bool = bool(enabled)
        #: Why it was disabled, or None.
        self.disabled_reason: Optional[str] = reason
        #: When it was added (unix seconds).
        self.created: float = created

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else f"disabled: {self.disabled_reason}"
        return f"<Endpoint {self.id} {self.url!r} events={list(self.events)} {state}>"


class DeliveryRecord:
    """One message for one endpoint, as stored: its state and last outcome."""

    __slots__ = (
        "id", "message_id", "endpoint_id", "url", "event", "state", "attempts", "tries",
        "next_at", "last_status", "last_error", "created", "updated", "body",
    )

    def __init__(self, row: Tuple[Any, ...]) -> None:
        (self.id, self.message_id, self.endpoint_id, self.url, self.event, self.state, self.attempts,
         self.tries, self.next_at, self.last_status, self.last_error, self.created, self.updated,
         body) = row
        #: The stored body, exactly as sent.
        self.body: bytes = bytes(body) if body is not None else b""

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


class _Job:
    __slots__ = ("delivery_id", "endpoint_id", "message_id", "event", "body", "tries", "sender")

    def __init__(self, delivery_id: int, endpoint_id: int, message_id: str, event: str, body: bytes,
                 tries: int, sender: Sender) -> None:
        self.delivery_id = delivery_id
        self.endpoint_id = endpoint_id
        self.message_id = message_id
        self.event = event
        self.body = body
        self.tries = tries
        self.sender = sender


_DELIVERY_COLUMNS = (
    "d.id, d.message_id, d.endpoint_id, e.url, m.event, d.state, d.attempts, d.tries, d.next_at, "
    "d.last_status, d.last_error, d.created, d.updated, m.body"
)
_DELIVERY_FROM = (
    "FROM deliveries d JOIN messages m ON m.id = d.message_id LEFT JOIN endpoints e ON e.id = d.endpoint_id"
)


class Outbox:
    """A durable queue of webhooks in one sqlite3 file, delivered to the endpoints stored with it.

    ``send()`` returns once the message is committed, so it survives a crash of
    the process at any point; workers (:meth:`start`, or :meth:`run` in a
    process of its own) deliver it once to every endpoint whose patterns match
    its type, retrying on ``schedule`` (one entry per attempt: the delay
    before it, from the previous attempt, ±``jitter``), then park it as dead.
    Several processes may share the file.

    ``workers`` threads send; at most ``per_endpoint`` of them (default: half)
    work for one endpoint, so a slow one never holds them all. ``lease`` is
    how long a claim lasts without renewal (a crashed worker's deliveries are
    taken over after it); it must be longer than ``timeout``, the seconds one
    attempt may take (an endpoint can set its own). ``poll`` is how often an
    idle worker looks for work sent by other processes. ``block_private=True``
    (with ``allow_networks``) turns on the Sender's SSRF guard for every
    endpoint: use it when users type in the endpoint URLs.
    """

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        *,
        schedule: Sequence[float] = DEFAULT_SCHEDULE,
        workers: int = 4,
        lease: float = 60.0,
        timeout: float = 10.0,
        per_endpoint: Optional[int] = None,
        poll: float = 0.5,
        jitter: float = 0.2,
        block_private: bool = False,
        allow_networks: Iterable[str] = (),
    ) -> None:
        path = os.fspath(path)
        if not path or path == ":memory:" or path.startswith("file:"):
            raise ValueError("an Outbox lives in a file: give a path such as 'webhooks.db'")
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
        #: The sqlite3 file.
        self.path = path
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
        # The Sender's SSRF guard, for endpoint URLs that users type in (see Sender).
        self._guard: Dict[str, Any] = {}
        if block_private:
            self._guard = {"block_private": True, "allow_networks": tuple(allow_networks)}
        elif allow_networks:
            raise ValueError("allow_networks is an option of block_private=True")

        if not os.path.exists(path):
            # Endpoint secrets are stored in the file: only its owner may read it.
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        self._api_conn: Any = _connect(path, "FULL")  # FULL: a send is on disk, not just in the OS cache
        self._closed = False
        self._init_state()
        try:
            self._ensure_schema()
        except BaseException:  # e.g. a file written by a newer webhooklite: do not leak the connection
            self._api_conn.close()
            raise
        _after_fork_in_child(self, Outbox._forked)

    def _init_state(self) -> None:
        self._api_lock = threading.RLock()
        self._batch_depth = 0
        # Worker state, guarded by _lock.
        self._lock = threading.Lock()
        self._work_cv = threading.Condition(self._lock)  # workers wait for jobs
        self._disp_cv = threading.Condition(self._lock)  # the dispatcher waits for results and sends
        self._progress = threading.Condition(self._lock)  # drain() waits for commits
        self._queues: Dict[int, Deque[_Job]] = {}
        self._inflight: Dict[int, int] = {}
        self._held: Dict[int, _Job] = {}
        self._gone: Set[int] = set()  # endpoints that just answered 410, until that is recorded
        self._more: Set[int] = set()  # endpoints whose last claim was full: more is probably due
        self._pace: Dict[int, float] = {}  # endpoint id -> recent seconds per attempt (moving average)
        self._next_due = float("inf")
        self._first_result = 0.0
        self._results: List[Tuple[_Job, Delivery, float]] = []
        self._rr = 0
        self._kick = False
        self._stopping = False
        self._running = False
        self._drainers = 0  # drain() calls running on workers that drain() started
        self._stopped = threading.Event()
        self._threads: List[threading.Thread] = []
        self._token = ""
        self._senders: Dict[int, Tuple[int, Sender]] = {}

    def _forked(self) -> None:
        """In a child process after fork() (gunicorn --preload...): no workers, and its own connection."""
        _ABANDONED.append(self._api_conn)  # the parent's: never used (nor closed) here
        self._api_conn = None  # opened on first use
        self._init_state()

    @property
    def _api(self) -> Any:
        if self._api_conn is None:
            if self._closed:
                raise RuntimeError("this Outbox is closed")
            self._api_conn = _connect(self.path, "FULL")
        return self._api_conn

    def __repr__(self) -> str:
        return f"Outbox({self.path!r}, workers={self.workers}, running={self._running})"

    def __enter__(self) -> "Outbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _ensure_schema(self) -> None:
        with self._api_lock:
            if self._api.execute("PRAGMA user_version").fetchone()[0] == _SCHEMA_VERSION:
                return
            with _write(self._api) as c:
                version = c.execute("PRAGMA user_version").fetchone()[0]
                if version > _SCHEMA_VERSION:
                    raise ValueError(f"{self.path!r} was written by a newer webhooklite (schema {version})")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    # -- sending ---------------------------------------------------------------

    def send(self, event: str, data: Any = None, *, id: Optional[str] = None) -> str:
        """Store ``event`` for every matching endpoint; return the message id once it is on disk.

        The body is encoded now (the webhooklite envelope), once. ``id`` sets
        the message id (``webhook-id``); sending an id that is already in the
        outbox does nothing, so a retried ``send`` cannot duplicate a message.
        """
        return self._enqueue([(event, encode_event(event, data), id)])[0]

    def send_many(self, items: Iterable[Tuple[str, Any]]) -> List[str]:
        """Store many ``(event, data)`` pairs in one transaction; return their ids."""
        return self._enqueue([(event, encode_event(event, data), None) for event, data in items])

    @contextmanager
    def batch(self) -> Iterator["Outbox"]:
        """Make every ``send`` in the block one transaction (all or none on an exception).

        The file's write lock is held for the whole block: keep it short.
        """
        with self._api_lock:
            if self._batch_depth == 0:
                self._api.execute("BEGIN IMMEDIATE")
            self._batch_depth += 1
            ok = False
            try:
                yield self
                ok = True
            finally:
                self._batch_depth -= 1
                if self._batch_depth == 0:
                    if ok:
                        self._api.execute("COMMIT")
                    else:
                        self._api.execute("ROLLBACK")
            if ok and self._batch_depth == 0:
                self._wake()

    def _enqueue(self, items: List[Tuple[str, bytes, Optional[str]]]) -> List[str]:
        ids: List[str] = []
        now = time.time()
        with self._api_lock:
            conn = self._api
            own = self._batch_depth == 0
            if own:
                conn.execute("BEGIN IMMEDIATE")
            try:
                endpoints = [
                    (eid, json.loads(events))
                    for eid, events in conn.execute("SELECT id, events FROM endpoints WHERE enabled = 1")
                ]
                rows = []
                for event, body, msg_id in items:
                    if msg_id is None:
                        msg_id = new_message_id()
                    elif not isinstance(msg_id, str) or not msg_id or any(c in msg_id for c in "\r\n\x00"):
                        raise ValueError("a message id is a non-empty string without CR, LF or NUL")
                    ids.append(msg_id)
                    targets = [eid for eid, patterns in endpoints if _matches(patterns, event)]
                    if not targets:
                        log.debug("outbox: no enabled endpoint takes %r; message %s not stored", event, msg_id)
                        continue
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO messages (id, event, body, created) VALUES (?, ?, ?, ?)",
                        (msg_id, event, body, now),
                    )
                    if cur.rowcount == 0:
                        continue  # this id is already in the outbox: sent once
                    for eid in targets:
                        rows.append((msg_id, eid, PENDING, now + self._delay(0), now, now))
                conn.executemany(
                    "INSERT INTO deliveries (message_id, endpoint_id, state, next_at, created, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                if own:
                    conn.execute("COMMIT")
            except BaseException:
                if own:
                    conn.execute("ROLLBACK")
                raise
        if own:
            self._wake()
        return ids

    def _delay(self, n: int, retry_after: Optional[float] = None) -> float:
        """Seconds before attempt ``n + 1`` (``n`` attempts made), jittered, at least Retry-After."""
        base = self.schedule[n]
        if self.jitter and base:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        if retry_after is not None:
            # A floor, capped at the schedule's longest delay so an endpoint cannot park messages for ever.
            base = max(base, min(retry_after, max(self.schedule)))
        return base

    def _wake(self) -> None:
        with self._lock:
            self._kick = True
            self._disp_cv.notify()

    # -- endpoints ---------------------------------------------------------------

    def add_endpoint(
        self,
        url: str,
        secret: Optional[Secret] = None,
        *,
        events: Optional[Iterable[str]] = None,
        scheme: str = "standard",
        headers: Optional[Dict[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> int:
        """Add an endpoint (or update the one with this URL, and enable it); return its id.

        ``events`` are shell-style patterns (default ``["*"]``: every event).
        Only messages sent from now on are delivered to it.
        """
        if isinstance(events, str):
            events = [events]
        patterns = list(events) if events is not None else ["*"]
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise ValueError("events is a list of non-empty patterns such as ['payment.*'] or ['*']")
        timeout = self.timeout if timeout is None else float(timeout)
        if not 0 < timeout < self.lease:
            raise ValueError(f"timeout is > 0 and shorter than the lease ({self.lease:g} s)")
        # Building a Sender checks the URL, secret, scheme and headers now, not at the first delivery.
        Sender(url, secret, scheme=scheme, timeout=timeout, retry=Retry(attempts=1), headers=headers, **self._guard).close()
        now = time.time()
        with self._api_lock, _write(self._api) as c:
            c.execute(
                "INSERT INTO endpoints (url, secret, scheme, events, headers, timeout, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (url) DO UPDATE SET "
                "secret = excluded.secret, scheme = excluded.scheme, events = excluded.events, "
                "headers = excluded.headers, timeout = excluded.timeout, enabled = 1, "
                "disabled_reason = NULL, version = version + 1",
                (url, _dump_secret(secret), scheme, json.dumps(patterns), json.dumps(dict(headers or {})), timeout, now),
            )
            eid: int = c.execute("SELECT id FROM endpoints WHERE url = ?", (url,)).fetchone()[0]
        self._wake()
        return eid

    def endpoints(self) -> List[Endpoint]:
        """Every endpoint, enabled or not, oldest first."""
        with self._api_lock:
            rows = self._api.execute(
                "SELECT id, url, events, scheme, headers, timeout, enabled, disabled_reason, created "
                "FROM endpoints ORDER BY id"
            ).fetchall()
        return [Endpoint(r) for r in rows]

    def _endpoint_id(self, c: Any, endpoint: Union[int, str]) -> int:
        if isinstance(endpoint, str):
            row = c.execute("SELECT id FROM endpoints WHERE url = ?", (endpoint,)).fetchone()
        else:
            row = c.execute("SELECT id FROM endpoints WHERE id = ?", (int(endpoint),)).fetchone()
        if row is None:
            raise KeyError(f"no endpoint {endpoint!r} in this outbox")
        return int(row[0])

    def disable_endpoint(self, endpoint: Union[int, str], reason: str = "disabled by hand") -> None:
        """Stop delivering to an endpoint (by id or URL); its pending deliveries wait until it is enabled."""
        with self._api_lock, _write(self._api) as c:
            eid = self._endpoint_id(c, endpoint)
            c.execute(
                "UPDATE endpoints SET enabled = 0, disabled_reason = ?, version = version + 1 WHERE id = ?",
                (reason, eid),
            )

    def enable_endpoint(self, endpoint: Union[int, str]) -> None:
        """Deliver to an endpoint again (by id or URL), including what waited while it was disabled."""
        with self._api_lock, _write(self._api) as c:
            eid = self._endpoint_id(c, endpoint)
            c.execute(
                "UPDATE endpoints SET enabled = 1, disabled_reason = NULL, version = version + 1 WHERE id = ?",
                (eid,),
            )
        self._wake()

    def remove_endpoint(self, endpoint: Union[int, str]) -> None:
        """Delete an endpoint (by id or URL) with its deliveries and their attempt log."""
        with self._api_lock, _write(self._api) as c:
            eid = self._endpoint_id(c, endpoint)
            c.execute("DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE endpoint_id = ?)", (eid,))
            c.execute("DELETE FROM deliveries WHERE endpoint_id = ?", (eid,))
            c.execute("DELETE FROM endpoints WHERE id = ?", (eid,))
            c.execute("DELETE FROM messages WHERE id NOT IN (SELECT message_id FROM deliveries)")

    # -- inspecting and retrying -------------------------------------------------

    def deliveries(
        self,
        state: Optional[str] = None,
        *,
        endpoint: Union[int, str, None] = None,
        message_id: Optional[str] = None,
        limit: int = 100,
    ) -> List[DeliveryRecord]:
        """Stored deliveries, newest first: filter by ``state`` ("pending", "delivered", "dead"),
        ``endpoint`` (id or URL) or ``message_id``."""
        where, args = [], []  # type: List[str], List[Any]
        with self._api_lock:
            if state is not None:
                if state not in (PENDING, DELIVERED, DEAD):
                    raise ValueError("state is 'pending', 'delivered' or 'dead'")
                where.append(f"d.state = '{state}'")  # a literal (one of three), so partial indexes apply
            if endpoint is not None:
                where.append("d.endpoint_id = ?")
                args.append(self._endpoint_id(self._api, endpoint))
            if message_id is not None:
                where.append("d.message_id = ?")
                args.append(message_id)
            sql = f"SELECT {_DELIVERY_COLUMNS} {_DELIVERY_FROM}"
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += " ORDER BY d.id DESC LIMIT ?"
            rows = self._api.execute(sql, args + [int(limit)]).fetchall()
        return [DeliveryRecord(r) for r in rows]

    def dead(self, *, endpoint: Union[int, str, None] = None, limit: int = 100) -> List[DeliveryRecord]:
        """Deliveries that failed for good (every attempt failed, or the endpoint answered 410)."""
        return self.deliveries(DEAD, endpoint=endpoint, limit=limit)

    def delivery(self, delivery_id: int) -> DeliveryRecord:
        """One delivery by id (KeyError when there is none)."""
        with self._api_lock:
            row = self._api.execute(
                f"SELECT {_DELIVERY_COLUMNS} {_DELIVERY_FROM} WHERE d.id = ?", (int(delivery_id),)
            ).fetchone()
        if row is None:
            raise KeyError(f"no delivery {delivery_id!r} in this outbox")
        return DeliveryRecord(row)

    def attempts(self, delivery_id: int) -> List[Attempt]:
        """Every logged attempt of a delivery, oldest first."""
        with self._api_lock:
            rows = self._api.execute(
                "SELECT at, status, duration, response, error, worker FROM attempts WHERE delivery_id = ? ORDER BY id",
                (int(delivery_id),),
            ).fetchall()
        return [Attempt(r) for r in rows]

    def retry(self, delivery_id: int) -> None:
        """Send a dead (or delivered) delivery again, now, with a fresh schedule and the same message id.

        Its endpoint must be enabled (``enable_endpoint`` first after a 410).
        A pending delivery is left as it is.
        """
        now = time.time()
        with self._api_lock, _write(self._api) as c:
            row = c.execute(
                "SELECT d.state, e.enabled, e.url FROM deliveries d LEFT JOIN endpoints e ON e.id = d.endpoint_id "
                "WHERE d.id = ?",
                (int(delivery_id),),
            ).fetchone()
            if row is None:
                raise KeyError(f"no delivery {delivery_id!r} in this outbox")
            state, enabled, url = row
            if state == PENDING:
                return
            if not enabled:
                raise ValueError(f"the endpoint {url!r} is disabled; enable_endpoint() it before retrying")
            c.execute(
                "UPDATE deliveries SET state = ?, next_at = ?, worker = NULL, tries = 0, updated = ? WHERE id = ?",
                (PENDING, now, now, int(delivery_id)),
            )
        self._wake()

    def stats(self) -> Dict[int, Dict[str, Any]]:
        """Per endpoint id: ``url``, ``enabled``, and how many deliveries are pending, delivered and dead."""
        with self._api_lock:
            eps = self._api.execute("SELECT id, url, enabled FROM endpoints ORDER BY id").fetchall()
            counts = self._api.execute(
                "SELECT endpoint_id, state, count(*) FROM deliveries GROUP BY endpoint_id, state"
            ).fetchall()
        out: Dict[int, Dict[str, Any]] = {
            eid: {"url": url, "enabled": bool(enabled), PENDING: 0, DELIVERED: 0, DEAD: 0} for eid, url, enabled in eps
        }
        for eid, state, n in counts:
            if eid in out:
                out[eid][state] = n
        return out

    def pending(self) -> int:
        """How many deliveries to enabled endpoints are not yet delivered or dead."""
        with self._api_lock:
            return int(
                self._api.execute(
                    "SELECT count(*) FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id "
                    "WHERE d.state = 'pending' AND e.enabled = 1"
                ).fetchone()[0]
            )

    def _any_pending(self) -> bool:
        with self._api_lock:
            return (
                self._api.execute(
                    "SELECT 1 FROM endpoints e WHERE e.enabled = 1 AND EXISTS "
                    "(SELECT 1 FROM deliveries d WHERE d.endpoint_id = e.id AND d.state = 'pending')"
                ).fetchone()
                is not None
            )

    def purge(self, older_than: float = 7 * 86400) -> int:
        """Forget delivered deliveries (and their log) last touched more than ``older_than`` seconds ago.

        Returns how many were removed. Messages with no delivery left go too.
        """
        cutoff = time.time() - older_than
        with self._api_lock, _write(self._api) as c:
            c.execute(
                "DELETE FROM attempts WHERE delivery_id IN "
                "(SELECT id FROM deliveries WHERE state = 'delivered' AND updated < ?)",
                (cutoff,),
            )
            n = c.execute("DELETE FROM deliveries WHERE state = 'delivered' AND updated < ?", (cutoff,)).rowcount
            c.execute("DELETE FROM messages WHERE id NOT IN (SELECT message_id FROM deliveries)")
        return int(n)

    # -- workers -------------------------------------------------------------------

    def start(self) -> "Outbox":
        """Deliver in background threads (``workers`` of them, plus one that claims and records)."""
        if self._closed:
            raise RuntimeError("this Outbox is closed")
        with self._lock:
            if self._running:
                if self._stopping:
                    raise RuntimeError("stop() has not finished yet: attempts are still in flight")
                return self
            import socket

            self._token = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
            self._running = True
            self._stopping = False
            self._stopped.clear()
            self._kick = True
        threads = [threading.Thread(target=self._dispatch, name="webhooklite-outbox", daemon=True)]
        threads += [
            threading.Thread(target=self._work, name=f"webhooklite-outbox-{i}", daemon=True) for i in range(self.workers)
        ]
        self._threads = threads
        for t in threads:
            t.start()
        return self

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop delivering: attempts in flight finish and are recorded; claims not started are released."""
        with self._lock:
            if not self._running:
                return
            self._stopping = True
            self._work_cv.notify_all()
            self._disp_cv.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            if t is threading.current_thread() or t.ident is None:  # not started (interrupted start())
                continue
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads if t is not threading.current_thread()):
            log.warning("outbox: stop() timed out with attempts still in flight; they finish in the background")
            return
        with self._lock:
            self._running = False
            self._threads = []
        for _, sender in self._senders.values():
            sender.close()
        self._senders.clear()
        self._stopped.set()

    def drain(self, timeout: Optional[float] = None) -> bool:
        """Wait until no delivery to an enabled endpoint is pending; True if so, False on timeout.

        When the workers are not running, they are started for the time of the
        call (so ``Outbox(path).drain()`` delivers everything that is due).
        """
        with self._lock:
            # Borrow the workers if they are not running, or if another drain() borrowed them:
            # the last borrower stops them (two concurrent drains must not stop each other's).
            borrowing = not self._running or self._drainers > 0
            if borrowing:
                self._drainers += 1
        if borrowing:
            self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                if not self._any_pending():
                    return True
                wait = 0.05
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    wait = min(wait, left)
                with self._lock:
                    self._progress.wait(wait)
        finally:
            if borrowing:
                with self._lock:
                    self._drainers -= 1
                    last = self._drainers == 0
                if last:
                    self.stop()

    def run(self) -> None:
        """Deliver until Ctrl-C or SIGTERM (or :meth:`stop` from another thread), then stop cleanly.

        For a worker process of its own: ``Outbox("webhooks.db").run()``.
        """
        try:
            with until_stopped():
                self.start()  # inside: a SIGTERM may come while the threads start
                while not self._stopped.wait(1.0):
                    pass
        finally:
            self.stop()

    def close(self) -> None:
        """Stop the workers and close the file."""
        self.stop()
        with self._api_lock:
            if not self._closed:
                self._closed = True
                if self._api_conn is not None:
                    self._api_conn.close()

    # -- the worker threads --------------------------------------------------------

    def _pick(self) -> Optional[_Job]:
        """The next job, round-robin over endpoints with room (called with _lock held)."""
        ids = list(self._queues)
        n = len(ids)
        for k in range(n):
            eid = ids[(self._rr + k) % n]
            queue = self._queues[eid]
            if queue and self._inflight.get(eid, 0) < self.per_endpoint and eid not in self._gone:
                self._rr = (self._rr + k + 1) % n
                return queue.popleft()
        return None

    def _work(self) -> None:
        while True:
            with self._lock:
                while True:
                    if self._stopping:
                        return
                    job = self._pick()
                    if job is not None:
                        break
                    self._work_cv.wait()
                self._inflight[job.endpoint_id] = self._inflight.get(job.endpoint_id, 0) + 1
            started = time.time()
            try:
                d = job.sender.attempt(job.body, job.message_id, job.event)
            except Exception as exc:  # a bug or a bad stored value: record it as a failed attempt
                log.exception("outbox: attempt of delivery %s failed unexpectedly", job.delivery_id)
                d = Delivery(job.message_id, job.sender.url, error=f"{type(exc).__name__}: {exc}")
                d.elapsed = time.time() - started
            with self._lock:
                self._inflight[job.endpoint_id] -= 1
                pace = self._pace.get(job.endpoint_id)
                self._pace[job.endpoint_id] = d.elapsed if pace is None else 0.8 * pace + 0.2 * d.elapsed
                if d.status == 410:
                    # Gone: send nothing more there, even before the dispatcher has recorded it.
                    self._gone.add(job.endpoint_id)
                if not self._results:
                    self._first_result = time.monotonic()
                    self._disp_cv.notify()  # the dispatcher records it within _FLUSH_DELAY
                self._results.append((job, d, started))
                if d.status == 410:
                    self._disp_cv.notify()
                elif self._stopping or len(self._results) >= _FLUSH_AT or (
                    job.endpoint_id in self._more
                    and len(self._queues.get(job.endpoint_id, ())) < self._depth(job.endpoint_id) // 2
                ):
                    # Record now and claim more (see _urgent). Otherwise outcomes are recorded in batches,
                    # within _FLUSH_DELAY: one transaction for many deliveries, and fewer thread switches.
                    self._disp_cv.notify()

    # -- the dispatcher: claims, records, renews -----------------------------------

    def _dispatch(self) -> None:
        conn = None
        last_renew = time.time()
        try:
            while True:
                with self._lock:
                    results, self._results = self._results, []
                    self._kick = False
                    stopping = self._stopping
                    room = {}
                    if not stopping:
                        for eid, queue in self._queues.items():
                            room[eid] = len(queue) + self._inflight.get(eid, 0)
                failed = False
                try:
                    if conn is None:
                        conn = _connect(self.path, "NORMAL")
                    renew = bool(self._held) and time.time() - last_renew >= self.lease / 3
                    wait = self._cycle(conn, results, None if stopping else room, renew)
                    if renew:
                        last_renew = time.time()
                except Exception:
                    log.exception("outbox: the delivery loop hit an error; retrying in 1 s")
                    with self._lock:
                        self._results[:0] = results  # not recorded: keep them for the next round
                    wait, failed = 1.0, True
                with self._lock:
                    if results:
                        self._progress.notify_all()
                    if self._stopping and not self._results and not any(self._inflight.values()):
                        if not stopping:
                            continue  # stop() came during this round: one more to record everything
                        break
                    if not self._held:
                        last_renew = time.time()  # nothing to renew: the clock starts with the next claim
                    else:
                        wait = min(wait, last_renew + self.lease / 3 - time.time())
                    if self._stopping:
                        if failed or not self._results:
                            self._disp_cv.wait(0.05)  # in-flight attempts notify as they end
                        continue
                    until = time.monotonic() + wait
                    while not self._urgent():
                        left = until - time.monotonic()
                        if self._results and not failed:
                            left = min(left, self._first_result + _FLUSH_DELAY - time.monotonic())
                        if left <= 0:
                            break
                        self._disp_cv.wait(left)
        finally:
            self._release(conn)

    def _depth(self, eid: int) -> int:
        """How many claims to hold for an endpoint (queued and in flight), from its recent pace."""
        pace = self._pace.get(eid)
        if pace is None:
            per_slot = _PREFETCH
        else:
            per_slot = max(_PREFETCH_MIN, min(_PREFETCH_MAX, int(_PREFETCH_SECONDS / max(pace, 1e-6))))
        return self.per_endpoint * per_slot

    def _urgent(self) -> bool:
        """Whether the dispatcher should go round now (called with _lock held)."""
        if self._kick or self._stopping or self._gone or len(self._results) >= _FLUSH_AT:
            return True
        for eid in self._more:
            if len(self._queues.get(eid, ())) < self._depth(eid) // 2:
                return True  # running low on claims for an endpoint that has more due
        return False

    def _cycle(self, conn: Any, results: List[Tuple[_Job, Delivery, float]],
               room: Optional[Dict[int, int]], renew: bool) -> float:
        """One round: record outcomes, renew leases, claim due work. Returns seconds to sleep."""
        now = time.time()
        wait = self.poll
        want: Dict[int, int] = {}
        endpoints: Dict[int, Tuple[Any, ...]] = {}
        dropped: List[int] = []
        if room is not None:
            # A read first: the write lock is taken only when there is something to write.
            rows = conn.execute(
                "SELECT id, version, url, secret, scheme, headers, timeout FROM endpoints WHERE enabled = 1"
            ).fetchall()
            enabled = {row[0] for row in rows}
            with self._lock:
                # Claims queued here for an endpoint that was disabled meanwhile (by hand, or a 410 seen
                # by another process) are not sent: they are handed back below.
                for eid in [e for e in self._queues if e not in enabled]:
                    for job in self._queues.pop(eid):
                        self._held.pop(job.delivery_id, None)
                        dropped.append(job.delivery_id)
            for row in rows:
                eid = row[0]
                free = self._depth(eid) - room.get(eid, 0)
                if free <= 0:
                    continue
                first = conn.execute(
                    "SELECT min(next_at) FROM deliveries WHERE endpoint_id = ? AND state = 'pending'", (eid,)
                ).fetchone()[0]
                if first is None:
                    continue
                if first <= now:
                    want[eid] = free
                    endpoints[eid] = row
                else:
                    wait = min(wait, first - now)
                    self._more.discard(eid)
        if not results and not renew and not want and not dropped:
            return wait

        claimed: List[_Job] = []
        self._next_due = float("inf")  # the earliest retry scheduled in this round
        full: Dict[int, bool] = {}
        gone: Set[int] = set()
        lost: Set[int] = set()
        with _write(conn) as c:
            if results:
                self._record(c, results, gone)
            if dropped:
                c.execute(
                    f"UPDATE deliveries SET worker = NULL, next_at = ? WHERE worker = ? AND state = 'pending' "
                    f"AND id IN ({','.join('?' * len(dropped))})",
                    [now, self._token] + dropped,
                )
            if renew:
                lost = self._renew(c, {job.delivery_id for job, _, _ in results})
            now = time.time()
            for eid, free in want.items():
                if eid in gone:
                    continue
                rows = c.execute(
                    "SELECT d.id, d.message_id, m.event, m.body, d.tries FROM deliveries d "
                    "JOIN messages m ON m.id = d.message_id JOIN endpoints e ON e.id = d.endpoint_id "
                    "WHERE d.endpoint_id = ? AND d.state = 'pending' AND d.next_at <= ? AND e.enabled = 1 "
                    # Never our own claims again, even if a renewal came late: they are queued here already.
                    "AND (d.worker IS NULL OR d.worker <> ?) "
                    "ORDER BY d.next_at LIMIT ?",
                    (eid, now, self._token, free),
                ).fetchall()
                full[eid] = len(rows) == free
                if not rows:
                    continue
                ids = [r[0] for r in rows]
                c.execute(
                    f"UPDATE deliveries SET worker = ?, next_at = ? WHERE id IN ({','.join('?' * len(ids))})",
                    [self._token, now + self.lease] + ids,
                )
                sender = self._sender(endpoints[eid])
                claimed += [_Job(i, eid, mid, ev, bytes(body), tries, sender) for i, mid, ev, body, tries in rows]
        # Committed: now the local state follows.
        with self._lock:
            for job, _, _ in results:
                self._held.pop(job.delivery_id, None)
            for eid in gone:
                for job in self._queues.pop(eid, ()):
                    self._held.pop(job.delivery_id, None)
                self._gone.discard(eid)
            if lost:
                for eid, queue in self._queues.items():
                    kept = [j for j in queue if j.delivery_id not in lost]
                    if len(kept) != len(queue):
                        self._queues[eid] = collections.deque(kept)
                for i in lost:
                    self._held.pop(i, None)
            for eid, more in full.items():
                if more:
                    self._more.add(eid)
                else:
                    self._more.discard(eid)
            for job in claimed:
                self._held[job.delivery_id] = job
                self._queues.setdefault(job.endpoint_id, collections.deque()).append(job)
            if claimed:
                # Wake only as many workers as can start now (each endpoint has per_endpoint slots).
                slots = sum(
                    min(len(q), self.per_endpoint - self._inflight.get(eid, 0))
                    for eid, q in self._queues.items() if eid not in self._gone
                )
                if slots > 0:
                    self._work_cv.notify(slots)
        # Claims are topped up when a queue runs low (_urgent), not after every round.
        return min(wait, self._next_due - time.time())

    def _record(self, c: Any, results: List[Tuple[_Job, Delivery, float]], gone: Set[int]) -> None:
        """Log the attempts and move their deliveries on: delivered, rescheduled, or dead.

        Many rows per statement: each statement is one trip into sqlite (where the GIL is let go
        and must be won back from the sending threads), so a batch costs a few trips, not one a row.
        """
        now = time.time()
        for i in range(0, len(results), 100):
            chunk = results[i:i + 100]
            args: List[Any] = []
            for job, d, started in chunk:
                snippet = d.response_body[:SNIPPET] if d.response_body else None
                args += (job.delivery_id, started, d.status, d.elapsed, snippet, d.error, self._token)
            c.execute(
                "INSERT INTO attempts (delivery_id, at, status, duration, response, error, worker) "
                "SELECT * FROM (VALUES " + ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk)) + ") "
                "WHERE column1 IN (SELECT id FROM deliveries)",  # not for a delivery removed meanwhile
                args,
            )
        # A success counts whoever holds the claim now.
        by_status: Dict[Optional[int], List[int]] = {}
        for job, d, _ in results:
            if d.ok:
                by_status.setdefault(d.status, []).append(job.delivery_id)
        for status, ids in by_status.items():
            for i in range(0, len(ids), 500):
                chunk_ids = ids[i:i + 500]
                c.execute(
                    "UPDATE deliveries SET state = 'delivered', next_at = NULL, worker = NULL, tries = tries + 1, "
                    "attempts = attempts + 1, last_status = ?, last_error = NULL, updated = ? "
                    f"WHERE id IN ({','.join('?' * len(chunk_ids))})",
                    [status, now] + chunk_ids,
                )
        for job, d, _ in results:
            if not d.ok:
                self._failed(c, job, d, now, gone)

    def _failed(self, c: Any, job: _Job, d: Delivery, now: float, gone: Set[int]) -> None:
        """A failed attempt: reschedule it, or it is dead (410 Gone: with the endpoint's others)."""
        c.execute(
            "UPDATE deliveries SET attempts = attempts + 1, last_status = ?, last_error = ?, updated = ? WHERE id = ?",
            (d.status, d.error, now, job.delivery_id),
        )
        if d.status == 410:
            reason = f"410 Gone at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(now))} UTC"
            c.execute(
                "UPDATE endpoints SET enabled = 0, disabled_reason = ?, version = version + 1 WHERE id = ?",
                (reason, job.endpoint_id),
            )
            c.execute(
                "UPDATE deliveries SET state = 'dead', next_at = NULL, worker = NULL, updated = ? "
                "WHERE id = ? AND state = 'pending'",
                (now, job.delivery_id),
            )
            n = 1 + c.execute(
                "UPDATE deliveries SET state = 'dead', next_at = NULL, worker = NULL, updated = ?, last_error = ? "
                "WHERE endpoint_id = ? AND state = 'pending'",
                (now, "not sent: the endpoint answered 410 Gone and was disabled", job.endpoint_id),
            ).rowcount
            gone.add(job.endpoint_id)
            log.warning(
                "outbox: endpoint %s answered 410 Gone: disabled; %d delivery(ies) dead", job.endpoint_id, n
            )
            return
        tries = job.tries + 1
        if tries >= len(self.schedule):
            n = c.execute(
                "UPDATE deliveries SET state = 'dead', next_at = NULL, worker = NULL, tries = ? "
                "WHERE id = ? AND worker = ? AND state = 'pending'",
                (tries, job.delivery_id, self._token),
            ).rowcount
            if n:
                log.warning("outbox: delivery %s (message %s) is dead after %d attempt(s): %s",
                            job.delivery_id, job.message_id, tries, d.error)
            return
        due = now + self._delay(tries, d.retry_after)
        c.execute(
            "UPDATE deliveries SET next_at = ?, worker = NULL, tries = ? WHERE id = ? AND worker = ? AND state = 'pending'",
            (due, tries, job.delivery_id, self._token),
        )
        self._next_due = min(self._next_due, due)

    def _renew(self, c: Any, recorded: Set[int]) -> Set[int]:
        """Extend the lease on every claim this worker holds; return the ids it lost meanwhile.

        ``recorded``: the outcomes written in this same transaction (no longer claims).
        """
        with self._lock:
            held = set(self._held) - recorded
        if not held:
            return set()
        ids = sorted(held)
        lost: Set[int] = set()
        taken = 0
        until = time.time() + self.lease
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            rows = dict(
                (r[0], r[1:]) for r in c.execute(f"SELECT id, worker, state FROM deliveries WHERE id IN ({marks})", chunk)
            )
            for i_ in chunk:
                worker, state = rows.get(i_, (None, None))
                if worker != self._token or state != PENDING:
                    lost.add(i_)  # taken over, or settled elsewhere (delivered, dead, removed): not ours to send
                    taken += worker is not None and worker != self._token
            c.execute(
                f"UPDATE deliveries SET next_at = ? WHERE worker = ? AND state = 'pending' AND id IN ({marks})",
                [until, self._token] + chunk,
            )
        if taken:
            log.warning("outbox: %d claim(s) were taken over by another worker (lease of %g s ran out)",
                        taken, self.lease)
        return lost

    def _sender(self, row: Tuple[Any, ...]) -> Sender:
        eid, version, url, secret, scheme, headers, timeout = row
        cached = self._senders.get(eid)
        if cached is not None and cached[0] == version:
            return cached[1]
        sender = Sender(
            url, _load_secret(secret), scheme=scheme, timeout=timeout, retry=Retry(attempts=1),
            headers=json.loads(headers), **self._guard,
        )
        if cached is not None:
            cached[1].close()  # connections in flight are closed when they come back
        self._senders[eid] = (version, sender)
        return sender

    def _release(self, conn: Any) -> None:
        """On the way out: give back claims that were never started, so others need not wait for the lease."""
        with self._lock:
            queued = [j.delivery_id for q in self._queues.values() for j in q]
            self._queues.clear()
            self._held.clear()
        try:
            if queued and conn is not None:
                with _write(conn) as c:
                    for i in range(0, len(queued), 500):
                        chunk = queued[i:i + 500]
                        c.execute(
                            f"UPDATE deliveries SET worker = NULL, next_at = ? WHERE worker = ? AND state = 'pending' "
                            f"AND id IN ({','.join('?' * len(chunk))})",
                            [time.time(), self._token] + chunk,
                        )
        except Exception:
            log.exception("outbox: could not release %d claim(s); they return when the lease ends", len(queued))
        finally:
            if conn is not None:
                conn.close()
