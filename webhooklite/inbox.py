"""Durable receiving: store each verified delivery, answer 202 at once, run the handlers after.

    inbox = Inbox("inbox.db")                        # or Inbox("postgresql://..."), or connect=...
    receiver = Receiver(secret, inbox=inbox)

    @receiver.on("payment.completed")
    def notify(event): ...

    receiver.serve(port=8000)                        # 202 before any handler runs; handlers run here, after
    python -m webhooklite worker myapp:receiver      # or in a process of their own

Providers want a 2xx quickly (GitHub gives up after 10 s) and each event handled once. With an
inbox the receiver checks the request as always (path, method, size, signature, body), writes
the raw body and headers durably, and answers ``202`` before any handler runs; a duplicate of a
stored id is answered 200 and not stored again. Inbox workers then run each matching handler
and record each handler's success on its own, so a retry runs only the handlers that have not
succeeded yet: when the second of two handlers fails, the first one is not run again.

How it stays correct (the outbox's engine and backends, so the same rules hold):

- The 202 is sent after the row is committed (sqlite ``synchronous=FULL``; PostgreSQL's commit):
  nothing answered 2xx is lost, whatever process is killed when. If the database cannot store
  it, the answer is 503 and the sender retries.
- Workers claim stored events with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; sqlite's
  write lock), renew it while the handlers run, and a crashed worker's events are taken over when
  its lease ends. A handler's success is written by the thread that ran it as soon as it
  returns (the last one's with the event's outcome, moments later), so after a crash only the
  handlers that had not finished run again (at-least-once for the handler running, or just
  finished, at the moment of the crash: make handlers idempotent where that matters).
- A failing handler is retried on ``schedule`` (from the previous attempt), then the event is dead:
  ``dead()``, ``retry(id)``. ``replay(since=...)`` runs every handler of stored events again.

Handlers are known by name (``module.qualname``, see :func:`handler_name`): a handler renamed
between a failure and its retry counts as a new one. ``async def`` handlers run to completion
on the receiver's own loop. ``handler_timeout`` is a deadline that is logged when a handler
exceeds it (a thread cannot be stopped from outside).
"""
import contextvars
import datetime
import json
import logging
import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ._signals import until_stopped
from ._writer import Writer
from .backends import Backend, StorageError, open_backend
from .engine import Engine, Job, Outcome
from .events import Event, decode_body, utc
from .headers import Headers
from .inbox_store import DEAD_STATE, DONE, PENDING, InboxStore
from .signing import new_message_id
from .store import _after_fork_in_child

__all__ = ["Inbox", "InboxEvent", "HandlerRun", "handler_name", "DEFAULT_SCHEDULE"]

log = logging.getLogger("webhooklite")

#: Retries of a failing handler: at once, 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h, 12 h.
DEFAULT_SCHEDULE = (0, 5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200)


def handler_name(fn: Any) -> str:
    """How the inbox knows a handler across processes and restarts: ``module.qualname``."""
    target = getattr(fn, "func", fn)  # functools.partial
    module = getattr(target, "__module__", None) or type(target).__module__
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}.{qualname}"


def _named(handlers: Sequence[Any]) -> List[Tuple[str, Any]]:
    """Each handler with its name; a name seen before in the list gets ``#2``, ``#3``... (whichever
    is free: handlers named ``m.h``, ``m.h`` and ``m.h#2`` are ``m.h``, ``m.h#2`` and ``m.h#2#2``)."""
    taken = set()
    out = []
    for fn in handlers:
        base = name = handler_name(fn)
        n = 1
        while name in taken:
            n += 1
            name = f"{base}#{n}"
        taken.add(name)
        out.append((name, fn))
    return out


def _since(when: Union[float, datetime.datetime, None]) -> Optional[float]:
    if when is None or isinstance(when, (int, float)):
        return when
    if when.tzinfo is None:
        raise ValueError("give an aware datetime (with tzinfo) or Unix seconds")
    return when.timestamp()


class HandlerRun:
    """What one handler did for one stored event: when it succeeded, how many runs failed, the last error."""

    __slots__ = ("name", "done", "failures", "last_error")

    def __init__(self, row: Tuple[Any, ...]) -> None:
        self.name, self.done, self.failures, self.last_error = row

    def __repr__(self) -> str:
        state = "done" if self.done is not None else f"failed x{self.failures}: {self.last_error!r}"
        return f"<HandlerRun {self.name} {state}>"


class InboxEvent:
    """One stored delivery: its state and, from :meth:`Inbox.event`, each handler's runs."""

    __slots__ = ("id", "message_id", "type", "state", "attempts", "tries", "next_at", "last_error", "received",
                 "updated", "timestamp", "headers", "body", "handlers")

    def __init__(self, row: Tuple[Any, ...], handlers: Iterable[Tuple[Any, ...]] = ()) -> None:
        (self.id, self.message_id, self.type, self.state, self.attempts, self.tries, self.next_at, self.last_error,
         self.received, self.updated, ts, headers, body) = row
        #: The signed timestamp, or None.
        self.timestamp: Optional[datetime.datetime] = utc(ts)
        #: The request's headers as received.
        self.headers = Headers._from_lower(json.loads(headers))
        #: The raw body, exactly as received.
        self.body: bytes = bytes(body)
        #: Each handler that ran for it (filled by :meth:`Inbox.event`).
        self.handlers: List[HandlerRun] = [HandlerRun(r) for r in handlers]

    def __repr__(self) -> str:
        last = f" last={self.last_error!r}" if self.last_error else ""
        return f"<InboxEvent {self.id} {self.message_id} {self.type!r} {self.state} attempts={self.attempts}{last}>"


class Inbox:
    """A durable store of received webhooks whose handlers run after the answer; see the module docstring.

    ``path`` is a sqlite3 file or a ``postgresql://`` URL (or ``connect=``, a DB-API connection
    factory), as for :class:`~webhooklite.Outbox`. ``workers`` threads run handlers;
    ``autostart=False`` makes a serving process only store (run the handlers elsewhere with
    ``python -m webhooklite worker myapp:receiver``, which calls :meth:`run`). ``lease`` must be
    longer than ``handler_timeout``, the seconds all of one event's handlers are expected to take
    (exceeding it is logged).
    """

    def __init__(
        self,
        path: Union[str, Any, None] = None,
        *,
        connect: Optional[Any] = None,
        schedule: Sequence[float] = DEFAULT_SCHEDULE,
        workers: int = 4,
        autostart: bool = True,
        lease: float = 60.0,
        handler_timeout: float = 30.0,
        poll: float = 0.5,
        jitter: float = 0.2,
    ) -> None:
        schedule = tuple(float(s) for s in schedule)
        if not schedule or any(s < 0 for s in schedule):
            raise ValueError("schedule is a non-empty list of delays in seconds, each >= 0")
        if workers < 1:
            raise ValueError("workers is at least 1 (autostart=False runs none in a serving process)")
        if not 0 < handler_timeout < lease:
            raise ValueError(f"handler_timeout is > 0 and shorter than the lease ({lease:g} s)")
        #: The storage: a SQLiteBackend or a PostgresBackend.
        self.backend: Backend = open_backend(path, connect)
        #: The sqlite file or the PostgreSQL URL (without its password).
        self.path = self.backend.where
        #: Delay before each attempt of an event's handlers, from the previous one.
        self.schedule: Tuple[float, ...] = schedule
        #: Handler threads.
        self.workers = workers
        #: Whether a process that serves the receiver also runs its handlers.
        self.autostart = autostart
        #: Seconds one event's handlers are expected to take: exceeding it is logged.
        self.handler_timeout = float(handler_timeout)
        #: Seconds a claim lasts without renewal.
        self.lease = float(lease)
        self._store = InboxStore(self.backend, self.handler_timeout)
        self._engine = Engine(self._store, self._attempt, schedule=schedule, workers=workers, per_lane=workers,
                              lease=self.lease, poll=poll, jitter=jitter, name="inbox")
        self._receiver: Any = None
        self._closed = False
        self._init_state()
        self._api_conn: Any = self.backend.connect(durable=True)
        try:
            self.backend.ensure_schema(self._api_conn, "inbox")
        except BaseException:
            self.backend.close(self._api_conn)
            raise
        _after_fork_in_child(self, Inbox._forked)

    def _init_state(self) -> None:
        self._lock = threading.RLock()
        self._group = Writer(self._put_many, self._stored, "inbox-writer")  # group commit
        self._local = threading.local()  # a handler thread's own connection, for writing its successes
        self._runs: Dict[Tuple[str, str], int] = {}  # (handler, outcome) -> runs, for metrics()
        self._runs_lock = threading.Lock()
        self._names: Dict[Tuple[Any, ...], List[Tuple[str, Any]]] = {}  # the router's handlers, named
        self._halted = False  # stop() was called: a delivery stored after it starts no handlers
        self._starting = threading.Lock()  # an autostart and a stop() do not cross (see _wanted)

    def _forked(self) -> None:
        if self._api_conn is not None:
            self.backend.abandon(self._api_conn)
        self._api_conn = None
        self._init_state()
        self._engine.reset()

    def __repr__(self) -> str:
        return f"Inbox({self.path!r}, workers={self.workers}, running={self._engine.running})"

    def __enter__(self) -> "Inbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _conn(self) -> Any:
        if self._api_conn is None:
            if self._closed:
                raise RuntimeError("this Inbox is closed")
            self._api_conn = self.backend.connect(durable=True)
        return self._api_conn

    def _read(self, fn: Any) -> Any:
        """``fn(conn)`` on the API connection; once more on a new one if the server had dropped it
        (a restart, a failover: a read changes nothing, so it may run twice)."""
        with self._lock:
            for again in (True, False):
                try:
                    return fn(self._conn())
                except StorageError as e:
                    cut = self._api_conn is not None and self.backend.broken(self._api_conn)
                    if not self._drop(e) or not (again and cut):
                        raise

    def _write(self, fn: Any) -> Any:
        """``fn(conn)`` in a transaction on the API connection; on a new one if the server dropped it
        while idle (the first delivery after a PostgreSQL restart is stored, not answered 503)."""
        with self._lock:
            try:
                with self.backend.transaction(self._conn(), reconnect=self._reconnect) as conn:
                    return fn(conn)
            except StorageError as e:
                self._drop(e)
                raise

    def _reconnect(self) -> Any:
        """(Under the lock) replace the API connection, lost while idle."""
        lost, self._api_conn = self._api_conn, None  # the server still down: the next use tries again
        self.backend.close(lost)
        return self._conn()

    def _drop(self, error: StorageError) -> bool:
        """The server dropped the API connection (or it cannot be trusted): a new one on next use. Says whether."""
        if self._api_conn is not None and self.backend.unusable(self._api_conn, error):
            self.backend.close(self._api_conn)
            self._api_conn = None
            return True
        return False

    # -- receiving (the Receiver calls these) ----------------------------------------------

    def bind(self, receiver: Any) -> None:
        """Attach the Receiver whose handlers this inbox runs (``Receiver(secret, inbox=inbox)`` does it)."""
        if self._receiver is not None and self._receiver is not receiver:
            raise ValueError("this Inbox already serves another Receiver: give each Receiver its own Inbox")
        self._receiver = receiver

    def put(self, event: Event) -> bool:
        """Store a verified delivery durably; True when it is new, False for a stored id (a duplicate).

        Raises StorageError when the database cannot take it (the receiver answers 503).
        """
        self._wanted()
        return self._group.put(self._row(event))

    def _put_later(self, event: Event, done: Any) -> None:
        """As :meth:`put`, but return at once: ``done(new, error)`` is called on the inbox's writer
        thread once the row is committed (the built-in server answers from there)."""
        self._wanted()
        self._group.put_later(self._row(event), done)

    def _wanted(self) -> None:
        """A delivery reached this process: its handlers run here, unless autostart=False or stop().
        Any delivery, a duplicate too: events stored before a restart are then handled, not left
        pending until a new one arrives (under ASGI, lifespan's startup starts them even sooner)."""
        if self.autostart and not self._engine.running and self._receiver is not None and not self._halted:
            with self._starting:  # checked again: a stop() just now must not be undone
                if not self._halted and not self._closed and not self._engine.running:
                    self._engine.start()

    @staticmethod
    def _row(event: Event) -> Tuple[Any, ...]:
        message_id = event.id or new_message_id()  # no id to dedupe on: every copy is stored
        ts = int(event.timestamp.timestamp()) if event.timestamp is not None else None
        h = event.headers
        return (message_id, event.type, ts, json.dumps(h._d if type(h) is Headers else dict(h.items())), event.body)

    def _stored(self) -> None:
        """A batch stored new events: their handlers are due now."""
        self._wanted()  # the first delivery in this process (gunicorn, uvicorn workers) started them
        self._engine.wake()

    def _put_many(self, rows: List[Tuple[Any, ...]]) -> List[bool]:
        """Store rows in one transaction (one commit, one fsync, for every request waiting on it)."""

        def put(conn: Any) -> List[bool]:
            news = self._store.put_many(conn, rows)
            if any(news):
                self._store.notify(conn)  # workers elsewhere wake at commit (PostgreSQL)
            return news

        result: List[bool] = self._write(put)
        return result

    # -- running the handlers -------------------------------------------------------------

    def start(self) -> "Inbox":
        """Run handlers in background threads (``workers`` of them, plus one that claims and records)."""
        if self._closed:
            raise RuntimeError("this Inbox is closed")
        if self._receiver is None:
            raise RuntimeError("no Receiver runs on this Inbox yet: Receiver(secret, inbox=inbox)")
        self._halted = False
        self._engine.start()
        return self

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop running handlers: those in flight finish and are recorded; claims not started are handed back.
        Deliveries stored after it do not start them again (:meth:`start` does)."""
        with self._starting:
            self._halted = True
        self._engine.stop(timeout)

    def drain(self, timeout: Optional[float] = None, *, due_only: bool = False) -> bool:
        """Run handlers until no event is pending (True), or ``timeout`` passes (False).

        ``due_only=True``: until nothing is due now (retries scheduled for later do not count).
        When the workers are not running they are started for the time of the call.
        """
        if self._receiver is None:
            raise RuntimeError("no Receiver runs on this Inbox yet: Receiver(secret, inbox=inbox)")
        if due_only:
            return self._engine.drain(lambda: self._pending(True) or self._engine.busy(), timeout)
        return self._engine.drain(self._pending, timeout)

    def _pending(self, due_only: bool = False) -> bool:
        return bool(self._read(lambda c: self._store.any_pending(c, due_only)))

    def run(self) -> None:
        """Run handlers until Ctrl-C or SIGTERM (or :meth:`stop`), then stop cleanly, finishing those in flight.

        ``python -m webhooklite worker myapp:receiver`` calls it.
        """
        try:
            with until_stopped():
                self.start()
                while not self._engine.wait_stopped(1.0):
                    pass
        finally:
            self.stop()

    def close(self) -> None:
        """Stop the workers and close the connection (deliveries being stored are stored first)."""
        self._group.close()
        self.stop()
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._api_conn is not None:
                    self.backend.close(self._api_conn)
                    self._api_conn = None

    def _attempt(self, job: Job) -> Outcome:
        """Run the event's handlers that have not succeeded yet, in registration order."""
        message_id, etype, ts, headers, body, done = job.data
        receiver = self._receiver
        start = time.monotonic()
        h = Headers._from_lower(json.loads(headers))
        try:
            data = decode_body(body, h.get("content-type"))
        except Exception as exc:  # verified and parsed when it arrived: only a bug gets here
            return Outcome(False, error=f"the stored body no longer parses: {exc}", elapsed=0.0, detail=[])
        event = Event(etype, message_id, utc(ts), data, h, body)
        results: List[Tuple[str, bool, Optional[str], float]] = []
        handlers = receiver._router.match(etype)
        named = self._names.get(handlers)
        if named is None:
            named = _named(handlers)
            if len(self._names) < 4096:  # bounded, as the router's cache is
                self._names[handlers] = named
        todo = [(name, handler) for name, handler in named if name not in done] if done else named
        for i, (name, handler) in enumerate(todo):
            t0 = time.monotonic()
            error: Optional[str] = None
            try:
                # In a context of its own, as under ASGI: what one handler sets in a ContextVar
                # (a tenant, a logging binding) never reaches the next event's handlers.
                result = contextvars.copy_context().run(handler, event)
                if hasattr(result, "__await__"):  # async def: on the receiver's own loop
                    receiver._loop().run(result)
            except BaseException as exc:  # sys.exit() in a handler too: it would end this thread silently
                error = f"{type(exc).__name__}: {exc}"[:1000]
                log.exception("inbox: handler %s failed on %s event %s", name, etype, message_id)
            took = time.monotonic() - t0
            if took > self.handler_timeout:
                log.warning("inbox: handler %s took %.1f s on event %s, over handler_timeout (%g s)",
                            name, took, message_id, self.handler_timeout)
            if error is None and i < len(todo) - 1:
                # Written at once, so a crash while a later handler runs does not run this one again;
                # the last one's success is written with the event's outcome (one transaction less).
                self._record_done(job.id, name)
            results.append((name, error is None, error, took))
            with self._runs_lock:
                key = (name, "ok" if error is None else "failed")
                self._runs[key] = self._runs.get(key, 0) + 1
        failed = [f"{name}: {error}" for name, ok, error, _ in results if not ok]
        return Outcome(not failed, error="; ".join(failed) or None, elapsed=time.monotonic() - start, detail=results)

    def _record_done(self, event_id: int, name: str) -> None:
        """Write one handler's success at once, on this thread's own connection (the outcome is written
        again with the event's, so a failure here loses nothing but the head start)."""
        conn = getattr(self._local, "conn", None)
        try:
            if conn is None:
                # NORMAL: a commit survives the process's death (WAL); a power cut may cost a rerun
                conn = self._local.conn = self.backend.connect(durable=False)
            with self.backend.transaction(conn):
                self._store.handler_done(conn, event_id, name)
        except Exception as exc:
            log.warning("inbox: could not record handler %s's success yet (%s); it is recorded with the event", name, exc)
            if conn is not None:
                self.backend.close(conn)
            self._local.conn = None

    # -- inspecting and operating ------------------------------------------------------------

    def events(self, state: Optional[str] = None, *, since: Union[float, datetime.datetime, None] = None,
               limit: int = 100) -> List[InboxEvent]:
        """Stored events, newest first: filter by ``state`` ("pending", "done", "dead") or ``since``."""
        if state is not None and state not in (PENDING, DONE, DEAD_STATE):
            raise ValueError("state is 'pending', 'done' or 'dead'")
        return [InboxEvent(r) for r in self._read(lambda c: self._store.events(c, state, _since(since), limit))]

    def dead(self, *, limit: int = 100) -> List[InboxEvent]:
        """Events whose handlers failed on every attempt of the schedule."""
        return self.events(DEAD_STATE, limit=limit)

    def event(self, event_id: Union[int, str]) -> InboxEvent:
        """One stored event, with each handler's runs (KeyError when none): by its id (an int) or its
        message id (a str; a str of digits that is no message id is taken as the id, as the CLI types it)."""
        def read(conn: Any) -> Optional[InboxEvent]:
            row = self._store.event(conn, event_id)
            return None if row is None else InboxEvent(row, self._store.handlers(conn, row[0]))

        found = self._read(read)
        if found is None:
            raise KeyError(f"no event {event_id} in this inbox")
        return found  # type: ignore[no-any-return]

    def retry(self, event_id: Union[int, str]) -> bool:
        """Run a dead (or done) event's handlers again now, with a fresh schedule: those that
        succeeded before stay done (only the failed ones run). A pending event is left as it is
        (False). KeyError when there is no such event."""
        eid = self.event(event_id).id
        changed = bool(self._write(lambda c: self._store.retry(c, eid)))
        self._engine.wake()
        return changed

    def replay(self, since: Union[float, datetime.datetime], until: Union[float, datetime.datetime, None] = None) -> int:
        """Run *every* handler again for the events received from ``since`` (to ``until``), e.g. after
        fixing a bug in one; returns how many events. Pending events are left to run as they are."""
        lo, hi = _since(since), _since(until)
        if lo is None:
            raise ValueError("replay() needs since: Unix seconds or an aware datetime")
        start, end = float(lo), float("inf") if hi is None else float(hi)
        n = int(self._write(lambda c: self._store.replay(c, start, end)))
        self._engine.wake()
        return n

    def stats(self) -> Dict[str, Any]:
        """Events by state, the oldest pending one's age (seconds), and per handler: successes and failed runs."""
        counts, handlers = self._read(self._store.counts)
        now = time.time()
        out: Dict[str, Any] = {PENDING: 0, DONE: 0, DEAD_STATE: 0, "oldest_pending": None, "handlers": {}}
        for state, n, oldest in counts:
            out[state] = int(n)
            if state == PENDING and oldest is not None:
                out["oldest_pending"] = max(0.0, now - float(oldest))
        for name, succeeded, failures in handlers:
            out["handlers"][name] = {"succeeded": int(succeeded or 0), "failures": int(failures or 0)}
        return out

    def purge(self, older_than: float = 7 * 86400) -> int:
        """Forget done events (and their handler records) last touched more than ``older_than`` seconds ago."""
        return int(self._write(lambda c: self._store.purge(c, time.time() - older_than)))

    def metrics(self) -> str:
        """Handler runs in this process by handler and outcome, and stored events by state, as Prometheus text."""
        from .metrics import Counter, Gauge, render

        runs = Counter("webhooklite_inbox_handler_runs_total", "Handler runs in this process, by outcome.",
                       ("handler", "outcome"))
        with self._runs_lock:
            for (name, outcome), n in sorted(self._runs.items()):
                runs.inc(name, outcome, by=n)
        events = Gauge("webhooklite_inbox_events", "Stored events, by state.", ("state",))
        for state, n in self.stats().items():
            if state in (PENDING, DONE, DEAD_STATE):
                events.set(n, state)
        return render([runs, events])
