"""``SQLiteStore``: the dedupe record that the processes of one host share, in a sqlite3 file.

See ``webhooklite.store`` for what a store is. ``import webhooklite`` does not load this
module (nor sqlite3): ``webhooklite.SQLiteStore`` does, on first use.
"""
from __future__ import annotations

import os
import threading
import time

from .store import _ABANDONED, _after_fork_in_child, _Claims

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Union

__all__ = ["SQLiteStore"]


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

    Each claim carries a token known only to the process that made it, so an
    ``abort`` touches only a claim its caller holds: a request whose claim was
    taken over after ``busy_for`` (in another process, or in this one) cannot,
    by a late abort, delete the newer claim (which would let a third request run
    the handlers beside the second). The receiver says which request a call is
    for (``holder=``); a direct caller is its thread (see ``_Claims``). A
    ``commit`` marks the id done whoever claims it now: the handlers succeeded.
    """

    takes_holder = True

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
        self._claims = _Claims()  # the tokens of this process's live claims
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
        self._claims = _Claims()
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

    def begin(self, id: str, holder: Any = None) -> str:
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
                self._claims.add(id, holder, token)
                return "new"
            row = self._c().execute("SELECT done FROM handled WHERE id = ?", (id,)).fetchone()
        if row is None:  # aborted between the two statements: let the sender come back
            return "busy"
        return "done" if row[0] else "busy"

    def commit(self, id: str, holder: Any = None) -> None:
        now = time.time()
        with self._lock:
            self._claims.take(id, holder, any_claim=True)  # forgotten: the id is done now
            # The handlers succeeded: done, whoever claims the id now (as PostgresStore does). A claim
            # that took ours over after busy_for then commits (no change) or aborts (it keeps "done"):
            # its failure must not let a retry run the handlers a third time after they succeeded.
            self._c().execute(
                "INSERT INTO handled (id, done, at, token) VALUES (?, 1, ?, NULL) "
                "ON CONFLICT (id) DO UPDATE SET done = 1, at = excluded.at, token = NULL",
                (id, now),
            )

    def abort(self, id: str, holder: Any = None) -> None:
        with self._lock:
            token = self._claims.take(id, holder, any_claim=False)
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
