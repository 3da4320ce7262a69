"""Dedupe stores: which message ids a receiver has already handled.

A store is any object with three methods (several hosts can share one, e.g.
on Redis; see the README):

``begin(id) -> "new" | "done" | "busy"``
    "new": this caller handles the message now; "done": its handlers already
    succeeded (answer 2xx); "busy": it is being handled elsewhere (answer 409).
``commit(id)``
    The handlers succeeded: later ``begin(id)`` calls say "done".
``abort(id)``
    The handlers failed: the id may be handled again.
"""
import os
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Set, Tuple, Union

__all__ = ["MemoryStore", "SQLiteStore"]


class MemoryStore:
    """In-process store; remembers the last ``max_ids`` handled ids (bounded memory).

    Once it is full, its memory is never reallocated as ids come and go: a
    ring of ``max_ids`` slots records the order (the oldest id is forgotten
    when a new one takes its slot), and membership is kept in many small sets
    (one per 64 ids, at most 4096, chosen by the id's hash). One big table with constant
    churn (an ``OrderedDict`` of 100,000 ids) is rebuilt every ~250,000 ids as
    several-MiB blocks, from whichever server thread commits at the time; under
    glibc's per-thread malloc arenas that grew a 32-connection server's RSS by
    about 25-35 MiB per million requests although no object was kept.
    """

    def __init__(self, max_ids: int = 100_000) -> None:
        if max_ids < 1:
            raise ValueError("max_ids is at least 1")
        #: How many handled ids are remembered; the oldest are forgotten first.
        self.max_ids = max_ids
        shards = 1
        while shards * 64 < max_ids and shards < 4096:
            shards *= 2
        self._mask = shards - 1
        self._shards: List[Set[str]] = [set() for _ in range(shards)]
        self._ring: List[str] = []  # handled ids in the order committed; grows to max_ids, then wraps
        self._next = 0  # once full: the ring slot the next new id takes (it holds the oldest id)
        self._busy: Set[str] = set()
        self._lock = threading.Lock()

    def begin(self, id: str) -> str:
        with self._lock:
            if id in self._shards[hash(id) & self._mask]:
                return "done"
            if id in self._busy:
                return "busy"
            self._busy.add(id)
            return "new"

    def commit(self, id: str) -> None:
        with self._lock:
            self._busy.discard(id)
            shard = self._shards[hash(id) & self._mask]
            if id in shard:  # already remembered: it keeps its place
                return
            shard.add(id)
            ring = self._ring
            if len(ring) < self.max_ids:
                ring.append(id)
                return
            i = self._next
            oldest = ring[i]
            self._shards[hash(oldest) & self._mask].discard(oldest)
            ring[i] = id
            self._next = i + 1 if i + 1 < self.max_ids else 0

    def abort(self, id: str) -> None:
        with self._lock:
            self._busy.discard(id)

    def __len__(self) -> int:
        return len(self._ring)


#: Connections inherited across fork(): sqlite3 forbids using them in the child, and closing one
#: there could disturb the parent's; they are kept here, untouched, for the life of the process.
_ABANDONED: List[Any] = []


def _after_fork_in_child(obj: Any, method: Callable[[Any], None]) -> None:
    """Call ``method(obj)`` in the child after each fork(), for as long as ``obj`` lives."""
    if not hasattr(os, "register_at_fork"):  # Windows: no fork
        return
    ref = weakref.ref(obj)

    def reinit() -> None:
        target = ref()
        if target is not None:
            method(target)

    os.register_at_fork(after_in_child=reinit)


def _open_sqlite(path: str, synchronous: str = "NORMAL", busy_timeout: float = 10.0) -> Any:
    """A sqlite3 connection in WAL mode (autocommit; transactions are explicit) shared by threads.

    Several processes may open the file at the same moment: switching to WAL
    needs a lock that sqlite does not wait for, so that step is retried.
    """
    import sqlite3  # imported on first use: `import webhooklite` stays light

    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        deadline = time.monotonic() + busy_timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        if str(mode).lower() != "wal":
            raise ValueError(f"{path!r}: sqlite3 could not switch the file to WAL mode (it says {mode!r})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    except BaseException:
        conn.close()
        raise
    return conn


class SQLiteStore:
    """A store in a sqlite3 file that several processes share (e.g. gunicorn workers on one host).

    ``Receiver(secret, store=SQLiteStore("handled.db"))``: a message id whose
    handlers succeeded in any process is answered 2xx everywhere without
    running them again. A "busy" mark older than ``busy_for`` seconds is
    taken over (a process that crashed while handling must not block the id
    for ever; keep handlers shorter than that). Handled ids are remembered for
    ``keep`` seconds (default 7 days: longer than an outbox's retry schedule),
    then forgotten; both kinds of old row are removed as time passes.

    Each claim carries a token known only to the thread that made it, so a
    ``commit`` or ``abort`` touches only the claim its caller holds: a process
    whose claim was taken over after ``busy_for`` cannot, by a late abort,
    delete the newer claim (which would let a third process run the handlers
    beside the second).
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], *, busy_for: float = 60.0, keep: float = 7 * 86400) -> None:
        if busy_for <= 0 or keep <= 0:
            raise ValueError("busy_for and keep are positive numbers of seconds")
        #: The sqlite3 file.
        self.path = os.fspath(path)
        #: Seconds after which a "busy" mark counts as abandoned.
        self.busy_for = float(busy_for)
        #: Seconds a handled id is remembered.
        self.keep = float(keep)
        self._lock = threading.Lock()
        self._claims: Dict[Tuple[str, int], str] = {}  # (id, thread) -> the token of the claim it holds
        self._next_sweep = 0.0
        # One connection shared by the server's threads (each call is a statement or two); processes
        # coordinate through sqlite's file locks, waiting up to 10 s for one another.
        # WAL + synchronous=NORMAL: a commit survives a crash of the process (not of the machine).
        self._conn: Any = _open_sqlite(self.path, "NORMAL")
        self._setup()
        _after_fork_in_child(self, SQLiteStore._forked)

    def _forked(self) -> None:
        # gunicorn --preload opens the store in the master, then forks the workers: each needs its own.
        _ABANDONED.append(self._conn)
        self._lock = threading.Lock()
        self._claims = {}
        self._conn = None

    def _c(self) -> Any:
        if self._conn is None:  # first use in a forked child
            self._conn = _open_sqlite(self.path, "NORMAL")
        return self._conn

    def _setup(self) -> None:
        c = self._c()
        c.execute(
            "CREATE TABLE IF NOT EXISTS handled (id TEXT PRIMARY KEY, done INTEGER NOT NULL, at REAL NOT NULL, token TEXT)"
        )
        if "token" not in [row[1] for row in c.execute("PRAGMA table_info(handled)")]:
            c.execute("ALTER TABLE handled ADD COLUMN token TEXT")  # a file from 0.1
        c.execute("CREATE INDEX IF NOT EXISTS handled_at ON handled (at)")

    def _sweep(self, now: float) -> None:
        """Remove ids remembered longer than ``keep`` and busy marks abandoned for ``busy_for`` (lock held)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + min(60.0, self.keep, self.busy_for)
        self._c().execute(
            "DELETE FROM handled WHERE (done = 1 AND at < ?) OR (done = 0 AND at < ?)",
            (now - self.keep, now - self.busy_for),
        )

    def begin(self, id: str) -> str:
        now = time.time()
        token = os.urandom(8).hex()
        with self._lock:
            self._sweep(now)
            # One atomic statement claims the id when it is new, its busy mark abandoned, or its
            # "done" older than keep (forgotten, even if no sweep has removed it yet).
            claimed = self._c().execute(
                "INSERT INTO handled (id, done, at, token) VALUES (?, 0, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET done = 0, at = excluded.at, token = excluded.token "
                "WHERE (done = 0 AND at < ?) OR (done = 1 AND at < ?)",
                (id, now, token, now - self.busy_for, now - self.keep),
            ).rowcount
            if claimed:
                self._claims[(id, threading.get_ident())] = token
                return "new"
            row = self._c().execute("SELECT done FROM handled WHERE id = ?", (id,)).fetchone()
        if row is None:  # aborted between the two statements: let the sender come back
            return "busy"
        return "done" if row[0] else "busy"

    def commit(self, id: str) -> None:
        now = time.time()
        with self._lock:
            token = self._claims.pop((id, threading.get_ident()), None)
            c = self._c()
            if token is not None:
                if c.execute(
                    "UPDATE handled SET done = 1, at = ?, token = NULL WHERE id = ? AND token = ?", (now, id, token)
                ).rowcount:
                    return
                # Our claim is gone: taken over (its holder will commit or abort it), or removed
                # as abandoned. Record the success only where no other claim stands.
                c.execute("INSERT OR IGNORE INTO handled (id, done, at) VALUES (?, 1, ?)", (id, now))
                return
            # No claim of ours (commit without begin): record it, but never over another's claim.
            c.execute(
                "INSERT INTO handled (id, done, at) VALUES (?, 1, ?) "
                "ON CONFLICT (id) DO UPDATE SET at = excluded.at WHERE done = 1",
                (id, now),
            )

    def abort(self, id: str) -> None:
        with self._lock:
            token = self._claims.pop((id, threading.get_ident()), None)
            if token is not None:
                self._c().execute("DELETE FROM handled WHERE id = ? AND done = 0 AND token = ?", (id, token))

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __len__(self) -> int:
        with self._lock:
            return int(self._c().execute("SELECT count(*) FROM handled WHERE done = 1").fetchone()[0])
