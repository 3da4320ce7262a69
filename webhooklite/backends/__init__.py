"""Storage backends: the little the durable parts need from a database, and choosing one.

    open_backend("webhooks.db")                    # sqlite3, from the standard library
    open_backend("postgresql://app@db/app")        # PostgreSQL: psycopg 3, else psycopg2, imported now
    open_backend(None, connect=factory)            # whatever the factory's DB-API connections speak

A backend is small (procrastinate's connector is the model). It opens connections with the
settings the engine relies on (autocommit: every transaction is explicit), runs a write
transaction, runs SQL text from its module's table of *named* queries, inserts many rows in a
statement or two, keeps each part's tables at their schema version, and, where the database can,
wakes idle workers when work is committed (PostgreSQL: LISTEN/NOTIFY; sqlite: they poll).

Each database's SQL lives in one module, ``backends/sqlite.py`` or ``backends/postgres.py``, so a
reviewer reads it in one sitting. The Python that calls the queries by name exists once for every
database: ``webhooklite/outbox_store.py`` for the outbox (an inbox adds its own queries under its
own part name, and a store module of its own over the same calls).

Every failure of the database reaches the caller as :class:`StorageError`, which says what
failed and where; the driver's exception is its ``__cause__``.
"""
import os
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, Union

from ..errors import WebhookError

__all__ = ["Backend", "StorageError", "open_backend", "is_url", "describe_target"]


class StorageError(WebhookError):
    """The database refused or could not be reached: locked, read-only, full, down... Nothing was stored."""

    #: The connection is lost (or in a state no one can trust): open a new one, whatever the driver says.
    lost = False


class Backend:
    """The interface; :class:`~webhooklite.backends.sqlite.SQLiteBackend` and
    :class:`~webhooklite.backends.postgres.PostgresBackend` implement it."""

    #: "sqlite" or "postgresql".
    dialect = ""
    #: Where the data is, for messages (a path, or a URL without its password).
    where = ""
    #: part -> query name -> SQL text, in the driver's parameter style.
    queries: Dict[str, Dict[str, str]] = {}

    # -- connections -------------------------------------------------------------------

    def connect(self, durable: bool = True) -> Any:
        """A new connection. ``durable``: each commit is on disk before it returns (sqlite's FULL sync)."""
        raise NotImplementedError

    def close(self, conn: Any) -> None:
        """Close a connection, quietly: it may be broken already."""
        try:
            conn.close()
        except Exception:
            pass

    def broken(self, conn: Any) -> bool:
        """Whether a connection is no longer usable (dropped by the server): open a new one."""
        return False

    def unusable(self, conn: Any, error: "StorageError") -> bool:
        """After ``error`` on ``conn``: whether to replace the connection (lost, or broken as the driver says)."""
        return error.lost or self.broken(conn)

    def abandon(self, conn: Any) -> None:
        """In a child after fork(): never use the parent's connection, nor close it (its socket is shared)."""
        from ..store import _ABANDONED

        _ABANDONED.append(conn)

    # -- statements --------------------------------------------------------------------

    def execute(self, conn: Any, sql: str, params: Any = ()) -> int:
        """Run one statement; return how many rows it changed."""
        raise NotImplementedError

    def fetchall(self, conn: Any, sql: str, params: Any = ()) -> List[Tuple[Any, ...]]:
        """Run one query; return its rows."""
        raise NotImplementedError

    def fetchone(self, conn: Any, sql: str, params: Any = ()) -> Optional[Tuple[Any, ...]]:
        rows = self.fetchall(conn, sql, params)
        return rows[0] if rows else None

    def insert_rows(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert many rows with the named query's multi-row form (few statements, not one per row)."""
        raise NotImplementedError

    def insert_new(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> Set[Any]:
        """Insert rows whose key (the first column) is not there yet; return the keys inserted."""
        raise NotImplementedError

    def ids(self, values: Iterable[Any]) -> Any:
        """A list of ids as one query parameter (``... IN <ids>`` in the query table's own form)."""
        raise NotImplementedError

    @contextmanager
    def transaction(self, conn: Any, reconnect: Optional[Callable[[], Any]] = None) -> Iterator[Any]:
        """One write transaction: committed at the end, rolled back on an exception or a failed COMMIT.

        Yields the connection it runs on: with ``reconnect``, a new one (``reconnect()`` gives it) when
        ``conn`` turns out lost at BEGIN, once. (The server dropped it while idle, a restart or a failover:
        nothing was sent on it yet, so beginning again elsewhere changes nothing.)
        """
        try:
            self.begin(conn)
        except StorageError as e:
            if reconnect is None or not self.unusable(conn, e):
                raise
            conn = reconnect()
            self.begin(conn)
        try:
            yield conn
        except BaseException:
            self.rollback(conn)
            raise
        self.commit(conn)

    def begin(self, conn: Any) -> None:
        self.execute(conn, "BEGIN")

    def commit(self, conn: Any) -> None:
        """COMMIT; if that fails (disk full, a deferred check, the connection lost), roll back and raise."""
        try:
            self.execute(conn, "COMMIT")
        except BaseException:
            self.rollback(conn)  # a COMMIT that failed must not leave the connection inside a transaction
            raise

    def rollback(self, conn: Any) -> None:
        try:
            self.execute(conn, "ROLLBACK")
        except Exception:  # no transaction left (the database ended it), or the connection is gone
            pass

    # -- schema, waking, callers' connections -----------------------------------------------

    def ensure_schema(self, conn: Any, part: str) -> None:
        """Create or migrate ``part``'s tables to the version this webhooklite writes (refuse newer)."""
        raise NotImplementedError

    def parts(self, conn: Any) -> Dict[str, int]:
        """The durable parts ("outbox", "inbox", "store") whose tables this database holds, with their
        schema versions; {} when it holds none. Reads only (the admin CLI asks before opening a part)."""
        raise NotImplementedError

    def notify(self, conn: Any, part: str) -> None:
        """Tell idle workers elsewhere that ``part`` has new work (on commit). Default: nothing (they poll)."""

    def listen(self, part: str, wake: Callable[[], None], stop: Any) -> Any:
        """A started thread that calls ``wake()`` on each notification until ``stop`` is set, or None."""
        return None

    def adopt(self, conn: Any) -> Any:
        """A caller's open connection, checked for a transactional send: same database, inside a
        transaction (never autocommit); returned ready for :meth:`execute`. ValueError otherwise."""
        raise NotImplementedError

    def error(self, exc: BaseException) -> StorageError:
        """The driver's exception as a StorageError saying what failed (``raise b.error(e) from e``)."""
        return StorageError(f"{self.where}: {exc}")


def is_url(target: str) -> bool:
    """Whether a storage target names PostgreSQL rather than a sqlite file."""
    return target.startswith(("postgresql://", "postgres://"))


def describe_target(target: str) -> str:
    """A target fit for messages and repr(): a URL loses its password."""
    if not is_url(target):
        return target
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(target)
    if parts.password is None:
        return target
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


def open_backend(
    target: Union[str, "os.PathLike[str]", None], connect: Optional[Callable[[], Any]] = None
) -> Backend:
    """The backend for a sqlite path, a ``postgresql://`` URL, or a DB-API connection factory."""
    if connect is not None:
        if target is not None:
            raise TypeError("give a path or URL, or connect=, not both")
        if not callable(connect):
            raise TypeError("connect= is a function that returns a new DB-API connection")
        conn = connect()
        kind = type(conn).__module__.split(".")[0]
        if kind == "sqlite3":
            from .sqlite import SQLiteBackend

            try:
                row = conn.execute("PRAGMA database_list").fetchone()
            finally:
                conn.close()
            if not row or not row[2]:
                raise ValueError("connect= opened an in-memory sqlite3 database: an outbox lives in a file")
            return SQLiteBackend(row[2])  # this file, with the connections the engine needs
        if kind in ("psycopg", "psycopg2"):
            from .postgres import PostgresBackend

            return PostgresBackend(connect=connect, first=conn)
        try:
            conn.close()
        except Exception:
            pass
        raise TypeError(
            f"connect= returned a {type(conn).__module__}.{type(conn).__name__}: webhooklite speaks "
            "sqlite3, psycopg (3) and psycopg2 connections"
        )
    if target is None:
        raise TypeError("give a sqlite file path, a postgresql:// URL, or connect=")
    target = os.fspath(target)
    if not isinstance(target, str):
        raise TypeError("the storage target is a path or a postgresql:// URL (a str)")
    if is_url(target):
        from .postgres import PostgresBackend

        return PostgresBackend(url=target)
    from .sqlite import SQLiteBackend

    return SQLiteBackend(target)
