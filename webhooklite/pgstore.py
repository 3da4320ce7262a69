"""PostgresStore: a receiver's dedupe store in PostgreSQL, shared by receivers on many hosts.

    receiver = Receiver(secret, store=PostgresStore("postgresql://app@db.internal/app"))

The same ``begin/commit/abort`` contract as :class:`~webhooklite.store.SQLiteStore` (see
``webhooklite.store``), made for several hosts:

- ``begin(id)`` claims the id with a token of its own in one statement (an UPSERT): "new" for
  exactly one caller at a time, wherever it runs; "busy" for the others while that claim lives;
  "done" once its handlers succeeded anywhere.
- ``abort(id)`` deletes only its own claim (the token must match): an abort that comes late,
  after the claim expired and another request (on another host, or in this process) took the id
  over, cannot free the other's claim. The receiver says which request a call is for
  (``holder=``, see ``webhooklite.store``).
- Expiry is by time, on the database's clock (hosts' clocks may disagree): a busy mark older than
  ``busy_for`` is taken over by the next ``begin``; a done mark older than ``keep`` is forgotten
  (the id counts as new). ``purge()``, also run every 1,000 commits, deletes both kinds of
  expired rows, abandoned busy marks included.

The table (``webhooklite_handled``) lives beside the outbox's in your database; the driver is
psycopg 3, else psycopg2, imported when the store is made.
"""
import threading
import uuid
from typing import Any, Callable, Dict, Optional, Union

from .backends import StorageError
from .backends.postgres import PostgresBackend
from .store import _after_fork_in_child, _Claims

__all__ = ["PostgresStore"]


class PostgresStore:
    """A dedupe store in PostgreSQL: ``PostgresStore(url)`` or ``PostgresStore(connect_function)``."""

    takes_holder = True

    def __init__(self, url_or_connect: Union[str, Callable[[], Any]], *, busy_for: float = 60.0,
                 keep: float = 7 * 86400) -> None:
        if busy_for <= 0 or keep <= 0:
            raise ValueError("busy_for and keep are positive numbers of seconds")
        if isinstance(url_or_connect, str):
            self._backend = PostgresBackend(url=url_or_connect)
        elif callable(url_or_connect):
            first = url_or_connect()
            self._backend = PostgresBackend(connect=url_or_connect, first=first)
        else:
            raise TypeError("PostgresStore takes a postgresql:// URL or a function returning a new connection")
        #: Where it is (a URL without its password).
        self.where = self._backend.where
        #: Seconds after which a "busy" mark counts as abandoned.
        self.busy_for = float(busy_for)
        #: Seconds a handled id is remembered.
        self.keep = float(keep)
        self._q = self._backend.queries["store"]
        self._init()
        with self._lock:
            self._backend.ensure_schema(self._c(), "store")
        _after_fork_in_child(self, PostgresStore._forked)

    def _init(self) -> None:
        # One connection shared by the server's threads (each call is one statement); hosts coordinate
        # through the database. The tokens of this process's live claims, by id and holder.
        self._lock = threading.Lock()
        self._conn: Any = None
        self._claims = _Claims()
        self._commits = 0

    def _forked(self) -> None:
        if self._conn is not None:
            self._backend.abandon(self._conn)
        self._init()

    def _c(self) -> Any:
        if self._conn is None:
            self._conn = self._backend.connect()
        return self._conn

    def _run(self, query: str, params: Dict[str, Any], fetch: bool = False) -> Any:
        """One statement under the lock. A connection found lost (the server restarted, failed over, or
        cut it while idle) is replaced, and the statement runs once more on the new one: each of the
        store's statements may run twice (a begin that did land is claimed again by its own token;
        commit, abort, purge and the reads change nothing the second time)."""
        b = self._backend
        with self._lock:
            for again in (True, False):
                try:
                    return b.fetchall(self._c(), query, params) if fetch else b.execute(self._c(), query, params)
                except StorageError as e:
                    conn = self._conn
                    if conn is None or not b.unusable(conn, e):
                        raise  # not the connection's fault, or no connection to be had: the server is down
                    cut = b.broken(conn)  # the connection itself is gone (not a timeout, a lock, a deadlock)
                    b.close(conn)
                    self._conn = None
                    if not (again and cut):
                        raise

    def _limits(self) -> Dict[str, float]:
        return {"busy_for": self.busy_for, "keep": self.keep}

    def begin(self, id: str, holder: Any = None) -> str:
        token = uuid.uuid4().hex
        for _ in range(2):  # once more if the row went away between the two statements (an abort)
            if self._run(self._q["begin"], dict(self._limits(), id=id, token=token), fetch=True):
                with self._lock:
                    self._claims.add(id, holder, token)
                return "new"
            row = self._run(self._q["state"], {"id": id}, fetch=True)
            if row:
                return "done" if row[0][0] else "busy"
        return "busy"

    def commit(self, id: str, holder: Any = None) -> None:
        with self._lock:
            self._claims.take(id, holder, any_claim=True)  # done, whoever holds it now
            self._commits += 1
            purge = self._commits % 1000 == 1
        self._run(self._q["commit"], {"id": id})
        if purge:
            self.purge()

    def abort(self, id: str, holder: Any = None) -> None:
        with self._lock:
            token: Optional[str] = self._claims.take(id, holder, any_claim=False)
        if token is not None:
            self._run(self._q["abort"], {"id": id, "token": token})

    def purge(self) -> int:
        """Delete expired rows now: done ids older than ``keep``, abandoned busy marks older than ``busy_for``."""
        return int(self._run(self._q["purge"], self._limits()))

    def close(self) -> None:
        """Close the connection (opened again if the store is used)."""
        with self._lock:
            if self._conn is not None:
                self._backend.close(self._conn)
                self._conn = None

    def __len__(self) -> int:
        return int(self._run(self._q["count"], {"keep": self.keep}, fetch=True)[0][0])

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r}, busy_for={self.busy_for:g}, keep={self.keep:g})"
