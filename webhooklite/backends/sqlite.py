"""The sqlite3 backend: a file on this host, the standard library's driver, and every query it runs.

One file, shared by the processes of one host (WAL mode: not over NFS). Writers take the file's
write lock up front (``BEGIN IMMEDIATE``), so two processes never claim the same row, and a
writer waits up to ``BUSY_TIMEOUT`` seconds for another's lock; the writers of one process queue
on a lock of their own first, in the order they came, so one that writes rarely is not starved
(``_WRITERS``). A commit of the connection that ``send()`` uses is on disk before it returns
(``synchronous=FULL``); the workers' connections use NORMAL (a crash of the process loses nothing;
of the machine, at most their last outcomes, which are then sent again). Idle workers poll: sqlite
has no way to wake another process.

Needs SQLite 3.25 (UPSERT, window functions) and its JSON1 functions (a list of ids is one parameter: ``json_each``).
Parameters are named (``:name``); multi-row inserts are written ``VALUES {rows}``.
"""
import json
import os
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from . import Backend, StorageError
from ._fifo import FifoLock, Hold
from .outbox_sql import CONFIG, DELIVERY, ENDPOINT, HEAD

__all__ = ["SQLiteBackend", "QUERIES", "SCHEMAS", "MIGRATIONS", "BUSY_TIMEOUT", "MIN_VERSION"]

#: Seconds a connection waits for another's write lock before giving up.
BUSY_TIMEOUT = 10.0
#: The oldest SQLite with what the queries use (UPSERT: 3.24; window functions, for stats(): 3.25).
MIN_VERSION = (3, 25, 0)
#: The most variables one statement may carry on the oldest SQLite (999), with room to spare.
_MAX_VARIABLES = 900

_IDS = "(SELECT value FROM json_each(:ids))"

#: One lock per file for this process's writers, held from BEGIN IMMEDIATE to COMMIT or ROLLBACK.
#: Without it they meet only in sqlite's busy handler, which sleeps and tries again (1 ms, then
#: 2, 5, 10 ... 100 ms a try): threads that write often (request threads storing into an inbox,
#: an app's send() calls) took the file's lock back-to-back while one that writes now and then
#: (the dispatcher) slept through their commits, waiting seconds (measured: one transaction in
#: 2 s against 8 busy writers). On this lock the writers take turns in the order they came
#: (a plain threading.Lock still let a busy one win it back at once: waits of 1.6 s under load).
#: Other processes still meet at the file's own lock (BUSY_TIMEOUT).
_WRITERS: Dict[str, FifoLock] = {}
_WRITERS_LOCK = threading.Lock()


def _writer_lock(key: str) -> FifoLock:
    lock = _WRITERS.get(key)
    if lock is None:
        with _WRITERS_LOCK:
            lock = _WRITERS.setdefault(key, FifoLock())
    return lock


def _forget_writers() -> None:
    """In a child after fork(): a lock a parent's thread held would stay held here for ever.

    The child gets new locks; the old ones stay usable for ending a transaction it inherited."""
    global _WRITERS_LOCK
    for lock in _WRITERS.values():
        lock._after_fork()
    _WRITERS.clear()
    _WRITERS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_writers)

# -- schema --------------------------------------------------------------------------------

#: One row per durable part (outbox, inbox...): the version its tables are at.
SCHEMA_TABLE = "CREATE TABLE IF NOT EXISTS webhooklite_schema (part TEXT PRIMARY KEY, version INTEGER NOT NULL)"

#: 1 was webhooklite 0.1 (tables endpoints, messages, deliveries, attempts; PRAGMA user_version = 1);
#: 2 added tenants and ordering keys; 3 endpoint health (last_success, failing_since) and attempts by time;
#: 4 made endpoint and delivery ids unique for the life of the file (AUTOINCREMENT).
OUTBOX_VERSION = 4

OUTBOX_ENDPOINTS = """
CREATE TABLE webhooklite_endpoints (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL DEFAULT '',        -- '' is "no tenant"
    url TEXT NOT NULL,
    secret TEXT,                             -- JSON: a list of secrets (bytes as {"b64": ...})
    scheme TEXT NOT NULL,
    events TEXT NOT NULL,                    -- JSON: a list of patterns
    headers TEXT NOT NULL,                   -- JSON: an object
    timeout REAL NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    version INTEGER NOT NULL DEFAULT 1,      -- bumped on every change: workers rebuild their Sender
    created REAL NOT NULL,
    UNIQUE (tenant, url)
)"""

_DELIVERY_INDEXES = """
CREATE INDEX webhooklite_deliveries_due ON webhooklite_deliveries (endpoint_id, next_at) WHERE state = 'pending';
CREATE INDEX webhooklite_deliveries_keyed ON webhooklite_deliveries (endpoint_id, key, id)
    WHERE state = 'pending' AND key IS NOT NULL;
CREATE INDEX webhooklite_deliveries_dead ON webhooklite_deliveries (endpoint_id) WHERE state = 'dead';
CREATE INDEX webhooklite_deliveries_message ON webhooklite_deliveries (message_id);
"""
_INDEXES = _DELIVERY_INDEXES + """CREATE INDEX webhooklite_attempts_delivery ON webhooklite_attempts (delivery_id);
"""

_MESSAGES = """
CREATE TABLE webhooklite_messages (
    id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    body BLOB NOT NULL,
    tenant TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL
)"""
_ATTEMPTS = """
CREATE TABLE webhooklite_attempts (
    id INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL,
    at REAL NOT NULL,
    status INTEGER,
    duration REAL NOT NULL,
    response BLOB,
    error TEXT,
    worker TEXT
)"""

#: The deliveries table (version 4: ids never used again; see OUTBOX_NEW). ``{name}``: the table's name.
_DELIVERIES_4 = """
CREATE TABLE {name} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    endpoint_id INTEGER NOT NULL,
    state TEXT NOT NULL,                     -- pending, delivered, dead
    next_at REAL,                            -- due (pending); a claim's lease end while claimed
    worker TEXT,                             -- the claiming worker's token
    tries INTEGER NOT NULL DEFAULT 0,        -- attempts on the current schedule
    attempts INTEGER NOT NULL DEFAULT 0,     -- attempts ever
    last_status INTEGER,
    last_error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    key TEXT                                 -- ordering key: one at a time, in id order, per endpoint
)"""

#: The tables at version 2 (a file at 2 or 3 is migrated from them). Its deliveries table is version 4's
#: but for AUTOINCREMENT: the same columns.
OUTBOX_SCHEMA = (
    OUTBOX_ENDPOINTS + ";\n" + _MESSAGES + ";\n"
    + _DELIVERIES_4.format(name="webhooklite_deliveries").replace(" AUTOINCREMENT", "") + ";\n"
    + _ATTEMPTS + ";\n" + _INDEXES
)

#: A 0.1 file, migrated in place (one transaction): tables renamed, endpoints rebuilt for the
#: (tenant, url) key, new columns added, old indexes replaced. Its pending messages stay pending.
#: ``user_version = 2`` makes a 0.1 process refuse the file ("written by a newer webhooklite")
#: rather than create its old tables again beside the new ones. A new file's user_version is left
#: alone (0): it may be the application's own database.
OUTBOX_FROM_0_1 = OUTBOX_ENDPOINTS + """;
INSERT INTO webhooklite_endpoints (id, tenant, url, secret, scheme, events, headers, timeout, enabled,
                                   disabled_reason, version, created)
    SELECT id, '', url, secret, scheme, events, headers, timeout, enabled, disabled_reason, version + 1, created
    FROM endpoints;
DROP TABLE endpoints;
DROP INDEX IF EXISTS deliveries_due;
DROP INDEX IF EXISTS deliveries_dead;
DROP INDEX IF EXISTS deliveries_message;
DROP INDEX IF EXISTS attempts_delivery;
ALTER TABLE messages RENAME TO webhooklite_messages;
ALTER TABLE webhooklite_messages ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE deliveries RENAME TO webhooklite_deliveries;
ALTER TABLE webhooklite_deliveries ADD COLUMN key TEXT;
ALTER TABLE attempts RENAME TO webhooklite_attempts;
PRAGMA user_version = 2;
""" + _INDEXES

#: Version 2 to 3: endpoint health, and the attempt log by time (stats over the last hour).
OUTBOX_2_TO_3 = """
-- when the newest attempt that succeeded started; when the first failed one after it started (NULL: healthy)
ALTER TABLE webhooklite_endpoints ADD COLUMN last_success REAL;
ALTER TABLE webhooklite_endpoints ADD COLUMN failing_since REAL;
CREATE INDEX webhooklite_attempts_at ON webhooklite_attempts (at);
"""

#: Version 4: endpoint and delivery ids are never used again (AUTOINCREMENT). Without it SQLite gives
#: a new row the id of the newest one deleted: a new endpoint got a removed one's id, and with it the
#: Sender (URL, secret) a worker had cached for that id; a delivery purged or removed with its endpoint
#: left its id to the next one, which a late outcome then settled. ``{name}``: the table's name.
_ENDPOINTS_4 = """
CREATE TABLE {name} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL DEFAULT '',        -- '' is "no tenant"
    url TEXT NOT NULL,
    secret TEXT,                             -- JSON: a list of secrets (bytes as {{"b64": ...}})
    scheme TEXT NOT NULL,
    events TEXT NOT NULL,                    -- JSON: a list of patterns
    headers TEXT NOT NULL,                   -- JSON: an object
    timeout REAL NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    version INTEGER NOT NULL DEFAULT 1,      -- bumped on every change: workers rebuild their Sender
    created REAL NOT NULL,
    last_success REAL,                       -- when the newest attempt that succeeded started
    failing_since REAL,                      -- when the first failed one after it started (NULL: healthy)
    UNIQUE (tenant, url)
)"""
_ENDPOINT_COLUMNS = ("id, tenant, url, secret, scheme, events, headers, timeout, enabled, disabled_reason, version, "
                     "created, last_success, failing_since")
_DELIVERY_COLUMNS = ("id, message_id, endpoint_id, state, next_at, worker, tries, attempts, last_status, "
                     "last_error, created, updated, key")

#: A new file's tables, at version 4.
OUTBOX_NEW = (
    _ENDPOINTS_4.format(name="webhooklite_endpoints") + ";\n" + _MESSAGES + ";\n"
    + _DELIVERIES_4.format(name="webhooklite_deliveries") + ";\n" + _ATTEMPTS + ";\n" + _INDEXES
    + "CREATE INDEX webhooklite_attempts_at ON webhooklite_attempts (at);\n"
)


def _outbox_3_to_4(backend: "SQLiteBackend", conn: Any) -> None:
    """Version 3 to 4, in place: the endpoints and deliveries tables rebuilt with AUTOINCREMENT (the same
    columns, the same ids; the next id follows the largest), their indexes with them.

    The outbox may share the application's database: the rebuild keeps what the application made on
    these two tables (its own indexes and triggers are made again after), and its views, which
    ``legacy_alter_table`` leaves alone while the new tables take the old names.
    """
    tables = ("webhooklite_endpoints", "webhooklite_deliveries")
    theirs = [sql for (sql,) in backend.fetchall(
        conn, "SELECT sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND sql IS NOT NULL "
        "AND tbl_name IN ('webhooklite_endpoints', 'webhooklite_deliveries') AND name NOT LIKE 'webhooklite%'")]
    backend.execute(conn, "PRAGMA legacy_alter_table = ON")
    try:
        for table, ddl, columns in zip(tables, (_ENDPOINTS_4, _DELIVERIES_4), (_ENDPOINT_COLUMNS, _DELIVERY_COLUMNS)):
            backend.execute(conn, ddl.format(name=table + "_4"))
            backend.execute(conn, f"INSERT INTO {table}_4 ({columns}) SELECT {columns} FROM {table}")
            backend.execute(conn, f"DROP TABLE {table}")
            backend.execute(conn, f"ALTER TABLE {table}_4 RENAME TO {table}")
    finally:
        backend.execute(conn, "PRAGMA legacy_alter_table = OFF")
    backend._script(conn, _DELIVERY_INDEXES)
    for sql in theirs:
        backend.execute(conn, sql)


#: Each durable part's tables: (version, script for a new file). An inbox adds its own entry (and its queries below).
SCHEMAS: Dict[str, Tuple[int, str]] = {"outbox": (OUTBOX_VERSION, OUTBOX_NEW)}
#: (part, version) -> what takes its tables to the next version, in place: a script, or a function(backend, conn).
MIGRATIONS: Dict[Tuple[str, int], Union[str, Callable[["SQLiteBackend", Any], None]]] = {
    ("outbox", 2): OUTBOX_2_TO_3, ("outbox", 3): _outbox_3_to_4,
}

# -- queries -------------------------------------------------------------------------------

_CLAIMABLE = "d.state = 'pending' AND d.next_at <= :now AND " + HEAD  # due, and first in its key

QUERIES: Dict[str, Dict[str, str]] = {"outbox": {
    # -- sending: fan-out at send time, in the sender's transaction
    "fanout": "SELECT id, events FROM webhooklite_endpoints WHERE tenant = :tenant",
    "insert_message": (
        "INSERT INTO webhooklite_messages (id, event, body, tenant, created) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO NOTHING"
    ),
    "insert_deliveries": (
        "INSERT INTO webhooklite_deliveries (message_id, endpoint_id, state, next_at, key, created, updated) "
        "VALUES {rows}"
    ),

    # -- the engine: lanes are enabled endpoints; claims carry the worker's token and its lease end
    "lanes": (
        "SELECT id, version, url, secret, scheme, headers, timeout FROM webhooklite_endpoints WHERE enabled = 1"
    ),
    # When each lane's next claimable delivery is due (not a follower blocked behind its key's head).
    "first_due": (
        "SELECT j.value, (SELECT d.next_at FROM webhooklite_deliveries d "
        f"WHERE d.endpoint_id = j.value AND d.state = 'pending' AND {HEAD} ORDER BY d.next_at LIMIT 1) "
        "FROM json_each(:ids) j"
    ),
    "claim": (
        "SELECT d.id, d.message_id, m.event, m.body, d.tries FROM webhooklite_deliveries d "
        "JOIN webhooklite_messages m ON m.id = d.message_id "
        f"WHERE d.endpoint_id = :lane AND {_CLAIMABLE} AND EXISTS ("
        "SELECT 1 FROM webhooklite_endpoints e WHERE e.id = d.endpoint_id AND e.enabled = 1) "
        "ORDER BY d.next_at, d.id LIMIT :limit"
    ),
    "mark_claimed": f"UPDATE webhooklite_deliveries SET worker = :token, next_at = :until WHERE id IN {_IDS}",
    "held": f"SELECT id, worker, state FROM webhooklite_deliveries WHERE id IN {_IDS}",
    "renew": (
        "UPDATE webhooklite_deliveries SET next_at = :until "
        f"WHERE worker = :token AND state = 'pending' AND id IN {_IDS}"
    ),
    "release": (
        "UPDATE webhooklite_deliveries SET worker = NULL, next_at = :now "
        f"WHERE worker = :token AND state = 'pending' AND id IN {_IDS}"
    ),
    "log_attempts": (
        "INSERT INTO webhooklite_attempts (delivery_id, at, status, duration, response, error, worker) VALUES {rows}"
    ),
    # A success counts whoever holds the claim now (the receiver has it).
    "delivered": (
        "UPDATE webhooklite_deliveries SET state = 'delivered', next_at = NULL, worker = NULL, tries = tries + 1, "
        "attempts = attempts + 1, last_status = :status, last_error = NULL, updated = :now "
        f"WHERE state <> 'delivered' AND id IN {_IDS}"
    ),
    "failed": (
        "UPDATE webhooklite_deliveries SET attempts = attempts + 1, last_status = :status, last_error = :error, "
        "updated = :now WHERE id = :id"
    ),
    # A failure moves the delivery on only while this worker still owns the claim.
    "retry_later": (
        "UPDATE webhooklite_deliveries SET next_at = :due, worker = NULL, tries = :tries "
        "WHERE id = :id AND worker = :token AND state = 'pending'"
    ),
    "give_up": (
        "UPDATE webhooklite_deliveries SET state = 'dead', next_at = NULL, worker = NULL, tries = :tries "
        "WHERE id = :id AND worker = :token AND state = 'pending'"
    ),
    # Once: a second 410 (another worker's, another process's) keeps the first reason.
    "close_endpoint": (
        "UPDATE webhooklite_endpoints SET enabled = 0, disabled_reason = :reason, version = version + 1 "
        "WHERE id = :id AND enabled = 1"
    ),
    "bury_one": (
        "UPDATE webhooklite_deliveries SET state = 'dead', next_at = NULL, worker = NULL, updated = :now "
        "WHERE id = :id AND state = 'pending'"
    ),
    "buried": "SELECT id FROM webhooklite_deliveries WHERE endpoint_id = :id AND state = 'pending'",  # before bury
    "bury_endpoint": (
        "UPDATE webhooklite_deliveries SET state = 'dead', next_at = NULL, worker = NULL, updated = :now, "
        "last_error = :error WHERE endpoint_id = :id AND state = 'pending'"
    ),

    # -- endpoints
    "endpoint_config": f"{CONFIG} WHERE id = :id",
    "endpoint_find": f"{CONFIG} WHERE tenant = :tenant AND url = :url",
    "endpoints_by_url": "SELECT id, tenant FROM webhooklite_endpoints WHERE url = :url ORDER BY id",
    "endpoint_insert": (
        "INSERT INTO webhooklite_endpoints (tenant, url, secret, scheme, events, headers, timeout, created) "
        "VALUES (:tenant, :url, :secret, :scheme, :events, :headers, :timeout, :now)"
    ),
    "endpoint_update": (
        "UPDATE webhooklite_endpoints SET url = :url, secret = :secret, scheme = :scheme, events = :events, "
        "headers = :headers, timeout = :timeout, version = version + 1 WHERE id = :id"
    ),
    "endpoint_disable": (
        "UPDATE webhooklite_endpoints SET enabled = 0, disabled_reason = :reason, version = version + 1 WHERE id = :id"
    ),
    "endpoint_enable": (  # a fresh start for its health too: failures before the pause do not count
        "UPDATE webhooklite_endpoints SET enabled = 1, disabled_reason = NULL, failing_since = NULL, "
        "version = version + 1 WHERE id = :id"
    ),
    "endpoints": f"{ENDPOINT} ORDER BY id",
    "remove_attempts": (
        "DELETE FROM webhooklite_attempts WHERE delivery_id IN "
        "(SELECT id FROM webhooklite_deliveries WHERE endpoint_id = :id)"
    ),
    "remove_deliveries": "DELETE FROM webhooklite_deliveries WHERE endpoint_id = :id",
    "remove_endpoint": "DELETE FROM webhooklite_endpoints WHERE id = :id",

    # -- inspecting: the filters are ANDed after "deliveries"; state is a literal so partial indexes apply
    "deliveries": DELIVERY,
    "where_pending": "d.state = 'pending'",
    "where_delivered": "d.state = 'delivered'",
    "where_dead": "d.state = 'dead'",
    "where_endpoint": "d.endpoint_id = :endpoint",
    "where_message": "d.message_id = :message",
    "where_before": "d.id < :before",
    "where_ids": f"d.id IN {_IDS}",
    "newest_first": "ORDER BY d.id DESC LIMIT :limit",
    "delivery": f"{DELIVERY} WHERE d.id = :id",
    "attempts": (
        "SELECT at, status, duration, response, error, worker FROM webhooklite_attempts "
        "WHERE delivery_id = :id ORDER BY id"
    ),
    "retry_check": (
        "SELECT d.state, e.enabled, e.url FROM webhooklite_deliveries d "
        "LEFT JOIN webhooklite_endpoints e ON e.id = d.endpoint_id WHERE d.id = :id"
    ),
    "retry": (
        "UPDATE webhooklite_deliveries SET state = 'pending', next_at = :now, worker = NULL, tries = 0, "
        "updated = :now WHERE id = :id"
    ),
    "retry_waiting": (  # a pending one waiting for its next attempt (not claimed): due now, same schedule
        "UPDATE webhooklite_deliveries SET next_at = :now, updated = :now "
        "WHERE id = :id AND state = 'pending' AND (worker IS NULL OR next_at < :now)"
    ),
    "stats_endpoints": (
        "SELECT id, url, enabled, tenant, disabled_reason, last_success, failing_since FROM webhooklite_endpoints "
        "ORDER BY id"
    ),
    # The newest attempts since :since (at most :cap), per endpoint: how many, how many got a 2xx, and the
    # nearest-rank p50 and p99 of their durations (ceil(p * n)-th smallest).
    "stats_recent": (
        "WITH recent AS (SELECT d.endpoint_id AS eid, a.status AS status, a.duration AS duration "
        "FROM webhooklite_attempts a JOIN webhooklite_deliveries d ON d.id = a.delivery_id "
        "WHERE a.at >= :since ORDER BY a.at DESC LIMIT :cap), "
        "ranked AS (SELECT eid, status, duration, row_number() OVER (PARTITION BY eid ORDER BY duration) AS r, "
        "count(*) OVER (PARTITION BY eid) AS n FROM recent) "
        "SELECT eid, max(n), sum(CASE WHEN status >= 200 AND status < 300 THEN 1 ELSE 0 END), "
        "max(CASE WHEN r = (n * 50 + 99) / 100 THEN duration END), "
        "max(CASE WHEN r = (n * 99 + 99) / 100 THEN duration END) FROM ranked GROUP BY eid"
    ),
    # For metrics(): the partial indexes on pending and dead keep these off the delivered rows.
    "gauges": (
        "SELECT endpoint_id, 'pending', count(*) FROM webhooklite_deliveries WHERE state = 'pending' "
        "GROUP BY endpoint_id UNION ALL SELECT endpoint_id, 'dead', count(*) FROM webhooklite_deliveries "
        "WHERE state = 'dead' GROUP BY endpoint_id"
    ),
    # -- endpoint health: recorded as outcomes are, in the dispatcher's transaction. A success is written
    # when it changes something (or at most once a second), so busy endpoints' rows are rarely locked.
    "health_ok": (
        "UPDATE webhooklite_endpoints SET last_success = max(coalesce(last_success, :at), :at), "
        "failing_since = CASE WHEN failing_since > :at THEN failing_since ELSE NULL END "
        "WHERE id = :id AND (failing_since IS NOT NULL OR last_success IS NULL OR last_success < :fresh)"
    ),
    # A failure starts the endpoint's failing streak, unless a later success was seen or an earlier failure did.
    "health_failed": (
        "UPDATE webhooklite_endpoints SET failing_since = :at WHERE id = :id "
        "AND (last_success IS NULL OR last_success < :at) AND (failing_since IS NULL OR failing_since > :at)"
    ),
    "health_check": (
        "SELECT failing_since FROM webhooklite_endpoints WHERE id = :id AND enabled = 1 AND failing_since <= :cutoff"
    ),
    # Once, whoever gets there first: the one whose UPDATE changed the row calls on_disabled.
    "health_disable": (
        "UPDATE webhooklite_endpoints SET enabled = 0, disabled_reason = :reason, version = version + 1 "
        "WHERE id = :id AND enabled = 1 AND failing_since <= :cutoff"
    ),
    # -- recovering every dead delivery since a time (to enabled endpoints only)
    "recover": (
        "UPDATE webhooklite_deliveries SET state = 'pending', next_at = :now, worker = NULL, tries = 0, updated = :now "
        "WHERE state = 'dead' AND updated >= :since AND endpoint_id IN "
        "(SELECT id FROM webhooklite_endpoints WHERE enabled = 1)"
    ),
    "recover_one": (
        "UPDATE webhooklite_deliveries SET state = 'pending', next_at = :now, worker = NULL, tries = 0, updated = :now "
        "WHERE state = 'dead' AND updated >= :since AND endpoint_id = :endpoint"
    ),
    "recover_skipped": (
        "SELECT d.endpoint_id, count(*) FROM webhooklite_deliveries d JOIN webhooklite_endpoints e "
        "ON e.id = d.endpoint_id WHERE d.state = 'dead' AND d.updated >= :since AND e.enabled = 0 GROUP BY d.endpoint_id"
    ),
    "stats_counts": "SELECT endpoint_id, state, count(*) FROM webhooklite_deliveries GROUP BY endpoint_id, state",
    "pending": (
        "SELECT count(*) FROM webhooklite_deliveries d JOIN webhooklite_endpoints e ON e.id = d.endpoint_id "
        "WHERE d.state = 'pending' AND e.enabled = 1"
    ),
    "any_pending": (
        "SELECT 1 FROM webhooklite_endpoints e WHERE e.enabled = 1 AND EXISTS ("
        "SELECT 1 FROM webhooklite_deliveries d WHERE d.endpoint_id = e.id AND d.state = 'pending') LIMIT 1"
    ),
    "any_due": (
        "SELECT 1 FROM webhooklite_endpoints e WHERE e.enabled = 1 AND EXISTS ("
        f"SELECT 1 FROM webhooklite_deliveries d WHERE d.endpoint_id = e.id AND {_CLAIMABLE}) LIMIT 1"
    ),
    "purge_attempts": (
        "DELETE FROM webhooklite_attempts WHERE delivery_id IN "
        "(SELECT id FROM webhooklite_deliveries WHERE state = 'delivered' AND updated < :cutoff)"
    ),
    "purge_deliveries": "DELETE FROM webhooklite_deliveries WHERE state = 'delivered' AND updated < :cutoff",
    "orphan_messages": (
        "DELETE FROM webhooklite_messages WHERE id NOT IN (SELECT message_id FROM webhooklite_deliveries)"
    ),
    "orphan_attempts": (  # logged by a worker after its delivery was removed
        "DELETE FROM webhooklite_attempts WHERE delivery_id NOT IN (SELECT id FROM webhooklite_deliveries)"
    ),
}}


class SQLiteBackend(Backend):
    """A sqlite3 file (created readable by its owner only: it holds the endpoints' secrets)."""

    dialect = "sqlite"
    queries = QUERIES

    def __init__(self, path: str) -> None:
        import sqlite3

        if sqlite3.sqlite_version_info < MIN_VERSION:
            raise RuntimeError(
                f"webhooklite needs SQLite {'.'.join(map(str, MIN_VERSION[:2]))} or newer (UPSERT, window functions); this "
                f"Python's sqlite3 module runs SQLite {sqlite3.sqlite_version}: use a newer Python, or "
                "PostgreSQL (a postgresql:// URL)"
            )
        if not path or path == ":memory:" or path.startswith("file:"):
            raise ValueError("an Outbox lives in a file: give a path such as 'webhooks.db'")
        self._sqlite3 = sqlite3
        #: The file.
        self.path = path
        self.where = path
        self._errors = (sqlite3.Error,)
        self._key = os.path.realpath(path)
        self._holding: Dict[int, Tuple[FifoLock, Hold]] = {}  # id(connection) -> the writer lock it holds
        if not os.path.exists(path):
            try:  # Endpoint secrets are stored in the file: only its owner may read it.
                os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
            except OSError as e:
                raise StorageError(f"{path}: cannot create the file ({e.strerror})") from e

    def connect(self, durable: bool = True) -> Any:
        from ..sqlite_store import _open_sqlite

        try:
            conn = _open_sqlite(self.path, "FULL" if durable else "NORMAL", BUSY_TIMEOUT)
        except self._errors as e:
            raise self.error(e) from e
        try:
            conn.execute("SELECT count(*) FROM json_each('[1]')")
        except self._errors as e:
            conn.close()
            raise RuntimeError(
                f"this Python's SQLite {self._sqlite3.sqlite_version} lacks the JSON1 functions webhooklite uses"
            ) from e
        return conn

    def execute(self, conn: Any, sql: str, params: Any = ()) -> int:
        try:
            return int(conn.execute(sql, params).rowcount)
        except self._errors as e:
            raise self.error(e) from e

    def fetchall(self, conn: Any, sql: str, params: Any = ()) -> List[Tuple[Any, ...]]:
        try:
            return list(conn.execute(sql, params).fetchall())
        except self._errors as e:
            raise self.error(e) from e

    def insert_rows(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        # Many rows a statement: each statement is one trip into sqlite (where the GIL is let go and
        # must be won back from the sending threads), so a batch costs a few trips, not one a row.
        if not rows:
            return
        width = len(rows[0])
        step = max(1, _MAX_VARIABLES // width)
        one = "(" + ", ".join("?" * width) + ")"
        for i in range(0, len(rows), step):
            chunk = rows[i:i + step]
            args: List[Any] = []
            for row in chunk:
                args.extend(row)
            self.execute(conn, sql.format(rows=", ".join([one] * len(chunk))), args)

    def insert_new(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> Set[Any]:
        # Inside BEGIN IMMEDIATE nobody else writes: one statement per row and its rowcount say which were new.
        new: Set[Any] = set()
        try:
            for row in rows:
                if conn.execute(sql, row).rowcount:
                    new.add(row[0])
        except self._errors as e:
            raise self.error(e) from e
        return new

    def ids(self, values: Iterable[Any]) -> Any:
        return json.dumps(list(values))

    def begin(self, conn: Any) -> None:
        # This process's writers queue on one lock (see _WRITERS); then the file's write lock up
        # front (IMMEDIATE: no upgrade deadlocks), which other processes may hold.
        lock = _writer_lock(self._key)
        hold = lock.acquire(timeout=BUSY_TIMEOUT)
        if hold is None:
            raise self.error(self._sqlite3.OperationalError("database is locked (by this process)"))
        self._holding[id(conn)] = (lock, hold)  # at once: from here whatever ends the transaction releases it
        try:
            self.execute(conn, "BEGIN IMMEDIATE")
        except BaseException:
            self._release(conn)
            raise

    def commit(self, conn: Any) -> None:
        try:
            super().commit(conn)  # which rolls back when COMMIT fails
        finally:
            self._release(conn)

    def rollback(self, conn: Any) -> None:
        try:
            super().rollback(conn)
        finally:
            self._release(conn)

    def _release(self, conn: Any) -> None:
        held = self._holding.get(id(conn))
        if held is not None:
            lock, hold = held
            try:
                lock.release(hold)
            except BaseException:  # e.g. Ctrl-C as it began: again (a hold that is over is left alone)
                lock.release(hold)
                raise
            finally:
                self._holding.pop(id(conn), None)

    def ensure_schema(self, conn: Any, part: str) -> None:
        if part not in SCHEMAS:
            raise ValueError(f"no schema for {part!r}")
        want, script = SCHEMAS[part]
        version = self._version(conn, part)
        if version == want:
            return
        with self.transaction(conn):
            version = self._version(conn, part)  # again, under the write lock: another process may have done it
            if version == want:
                return
            if version is not None and version > want:
                raise ValueError(f"{self.path!r} was written by a newer webhooklite ({part} schema {version})")
            self.execute(conn, SCHEMA_TABLE)
            if part == "outbox" and self._is_0_1(conn):
                self._script(conn, OUTBOX_FROM_0_1)
                version = 2
            elif version is None:
                self._script(conn, script)
                version = want
            while version < want:  # in place, step by step, in this one transaction
                self._script(conn, MIGRATIONS[(part, version)])
                version += 1
            self.execute(
                conn, "INSERT INTO webhooklite_schema (part, version) VALUES (:part, :version) "
                "ON CONFLICT (part) DO UPDATE SET version = excluded.version",
                {"part": part, "version": want},
            )

    def parts(self, conn: Any) -> Dict[str, int]:
        names = {r[0] for r in self.fetchall(conn, "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "webhooklite_schema" in names:
            return {str(p): int(v) for p, v in self.fetchall(conn, "SELECT part, version FROM webhooklite_schema")}
        if self.fetchall(conn, "PRAGMA user_version")[0][0] == 1 and {"endpoints", "deliveries"} <= names:
            return {"outbox": 1}  # a 0.1 file: opening it as an Outbox migrates it
        return {}

    def _version(self, conn: Any, part: str) -> Optional[int]:
        if not self.fetchall(conn, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'webhooklite_schema'"):
            return None
        row = self.fetchone(conn, "SELECT version FROM webhooklite_schema WHERE part = :part", {"part": part})
        return None if row is None else int(row[0])

    def _is_0_1(self, conn: Any) -> bool:
        names = {r[0] for r in self.fetchall(conn, "SELECT name FROM sqlite_master WHERE type = 'table'")}
        user_version = self.fetchall(conn, "PRAGMA user_version")[0][0]
        if user_version > 1 and {"deliveries", "messages"} <= names:
            raise ValueError(f"{self.path!r} was written by a newer webhooklite (schema {user_version})")
        return user_version == 1 and {"endpoints", "messages", "deliveries", "attempts"} <= names

    def _script(self, conn: Any, script: Union[str, Callable[["SQLiteBackend", Any], None]]) -> None:
        if callable(script):
            script(self, conn)
            return
        for statement in script.split(";\n"):
            if statement.strip():
                self.execute(conn, statement)

    def adopt(self, conn: Any) -> Any:
        if not isinstance(conn, self._sqlite3.Connection):
            raise ValueError(
                f"conn= is a {type(conn).__module__}.{type(conn).__name__}, but this outbox is the sqlite "
                f"file {self.path!r}: give a sqlite3 connection to that file"
            )
        if getattr(conn, "autocommit", None) is True or (conn.isolation_level is None and not conn.in_transaction):
            raise ValueError(
                "conn= is in autocommit mode, so the message would commit on its own: open a transaction "
                "first (conn.execute('BEGIN IMMEDIATE')), send, then commit it with your own changes"
            )
        row = self.fetchone(conn, "PRAGMA database_list")
        if row is None or not row[2] or not os.path.samefile(row[2], self.path):
            raise ValueError(f"conn= is a connection to {row[2] if row else '?'!r}, not to the outbox's file {self.path!r}")
        return conn

    def error(self, exc: BaseException) -> StorageError:
        text = str(exc)
        low = text.lower()
        if "locked" in low or "busy" in low:
            hint = f"the file is locked: another connection held its write lock for over {BUSY_TIMEOUT:g} s"
        elif "readonly" in low or "read-only" in low:
            hint = "the file (or its directory) is read-only"
        elif "full" in low:
            hint = "the disk is full"
        elif "unable to open" in low:
            hint = "the file cannot be opened"
        else:
            hint = "sqlite3 failed"
        return StorageError(f"{self.path}: {hint} ({text})")
