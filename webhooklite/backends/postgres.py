"""The PostgreSQL backend: psycopg 3 (else psycopg2), imported only here, and every query it runs.

Workers on many hosts share one database. A claim is one statement, ``UPDATE ... FROM (SELECT ...
FOR UPDATE SKIP LOCKED)``: two workers' claims never overlap and never wait for each other. A
statement-level trigger on the deliveries table calls ``pg_notify('webhooklite_outbox', <schema>)``,
delivered when the sending transaction commits (whoever sent: ``Outbox.send``, or the app's own
connection), and each worker crew LISTENs on a connection of its own, so an idle worker starts
within milliseconds of a commit; the poll is only a backstop.

Our connections are autocommit and transactions are explicit (``BEGIN`` ... ``COMMIT``), so no
connection sits idle in a transaction. A connection that the server dropped (a restart,
``pg_terminate_backend``) is replaced on next use; the dispatcher and the listener reconnect by
themselves, with a growing pause. Hosts compare lease times written by each other's clocks: keep
them in sync (NTP); a skew up to about two thirds of the lease is harmless.

Parameters are named (``%(name)s``); a list of ids is one array parameter (``= ANY(%(ids)s)``);
multi-row inserts take one array per column (``unnest``). The tables live in the first schema of
the connection's ``search_path`` (``?options=-csearch_path%3Dmyschema`` in the URL picks one).
"""
import logging
import select
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Type

from . import Backend, StorageError, describe_target
from .outbox_sql import CONFIG, DELIVERY, ENDPOINT, HEAD

__all__ = ["PostgresBackend", "QUERIES", "SCHEMAS", "MIGRATIONS", "driver"]

log = logging.getLogger("webhooklite")

#: Every driver exception class seen so far (psycopg.Error, psycopg2.Error): what becomes StorageError.
_ERRORS: Tuple[Type[BaseException], ...] = ()

CHANNEL = {"outbox": "webhooklite_outbox"}
#: The table a part's workers claim from: its schema (namespace) is the payload of the part's notifications.
_QUEUE_TABLE = {"outbox": "webhooklite_deliveries", "inbox": "webhooklite_inbox"}

#: The sqlite tables' numbering up to 3 (1 was 0.1, sqlite only; 3: endpoint health). sqlite's 4 made its ids
#: unique for the life of the file, which PostgreSQL's sequences always were: these tables stay at 3, so that a
#: process of an earlier release still opens them (a rolling deploy, a rollback).
OUTBOX_VERSION = 3

_LOCK = 0x77686B6C  # "whkl": the advisory lock that serializes schema changes in one database

#: One row per durable part (outbox, store, inbox...): the version its tables are at.
SCHEMA_TABLE = "CREATE TABLE IF NOT EXISTS webhooklite_schema (part text PRIMARY KEY, version integer NOT NULL)"

OUTBOX_SCHEMA = """
CREATE TABLE webhooklite_endpoints (
    id bigserial PRIMARY KEY,
    tenant text NOT NULL DEFAULT '',
    url text NOT NULL,
    secret text,
    scheme text NOT NULL,
    events text NOT NULL,
    headers text NOT NULL,
    timeout double precision NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    disabled_reason text,
    version integer NOT NULL DEFAULT 1,
    created double precision NOT NULL,
    UNIQUE (tenant, url)
);
CREATE TABLE webhooklite_messages (
    id text PRIMARY KEY,
    event text NOT NULL,
    body bytea NOT NULL,
    tenant text NOT NULL DEFAULT '',
    created double precision NOT NULL
);
CREATE TABLE webhooklite_deliveries (
    id bigserial PRIMARY KEY,
    message_id text NOT NULL,
    endpoint_id bigint NOT NULL,
    state text NOT NULL,
    next_at double precision,
    worker text,
    tries integer NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    last_status integer,
    last_error text,
    created double precision NOT NULL,
    updated double precision NOT NULL,
    key text
);
CREATE TABLE webhooklite_attempts (
    id bigserial PRIMARY KEY,
    delivery_id bigint NOT NULL,
    at double precision NOT NULL,
    status integer,
    duration double precision NOT NULL,
    response bytea,
    error text,
    worker text
);
CREATE INDEX webhooklite_deliveries_due ON webhooklite_deliveries (endpoint_id, next_at) WHERE state = 'pending';
CREATE INDEX webhooklite_deliveries_keyed ON webhooklite_deliveries (endpoint_id, key, id)
    WHERE state = 'pending' AND key IS NOT NULL;
CREATE INDEX webhooklite_deliveries_dead ON webhooklite_deliveries (endpoint_id) WHERE state = 'dead';
CREATE INDEX webhooklite_deliveries_message ON webhooklite_deliveries (message_id);
CREATE INDEX webhooklite_attempts_delivery ON webhooklite_attempts (delivery_id);
CREATE OR REPLACE FUNCTION webhooklite_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_notify('webhooklite_outbox', TG_TABLE_SCHEMA); RETURN NULL; END $$;
CREATE TRIGGER webhooklite_deliveries_notify AFTER INSERT ON webhooklite_deliveries
    FOR EACH STATEMENT EXECUTE PROCEDURE webhooklite_outbox_notify()
"""

#: Version 2 to 3: endpoint health, and the attempt log by time (stats over the last hour).
OUTBOX_2_TO_3 = """
ALTER TABLE webhooklite_endpoints ADD COLUMN last_success double precision;
ALTER TABLE webhooklite_endpoints ADD COLUMN failing_since double precision;
CREATE INDEX webhooklite_attempts_at ON webhooklite_attempts (at)
"""

_IDS = "ANY(%(ids)s)"
_CLAIMABLE = "d.state = 'pending' AND d.next_at <= %(now)s AND " + HEAD  # due, and first in its key

QUERIES: Dict[str, Dict[str, str]] = {"outbox": {
    # -- sending
    "fanout": "SELECT id, events FROM webhooklite_endpoints WHERE tenant = %(tenant)s",
    "insert_message": (
        "INSERT INTO webhooklite_messages (id, event, body, tenant, created) "
        "SELECT * FROM unnest(%s::text[], %s::text[], %s::bytea[], %s::text[], %s::float8[]) "
        "ON CONFLICT (id) DO NOTHING RETURNING id"
    ),
    "insert_deliveries": (
        "INSERT INTO webhooklite_deliveries (message_id, endpoint_id, state, next_at, key, created, updated) "
        "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::float8[], %s::text[], %s::float8[], "
        "%s::float8[])"
    ),

    # -- the engine
    "lanes": "SELECT id, version, url, secret, scheme, headers, timeout FROM webhooklite_endpoints WHERE enabled",
    # When each lane's next claimable delivery is due (not a follower blocked behind its key's head).
    "first_due": (
        "SELECT e.id, (SELECT d.next_at FROM webhooklite_deliveries d "
        f"WHERE d.endpoint_id = e.id AND d.state = 'pending' AND {HEAD} ORDER BY d.next_at LIMIT 1) "
        "FROM unnest(%(ids)s::bigint[]) AS e(id)"
    ),
    # One statement: pick due rows nobody holds a lock on, and mark them ours.
    "claim": (
        "WITH due AS (SELECT d.id FROM webhooklite_deliveries d "
        f"WHERE d.endpoint_id = %(lane)s AND {_CLAIMABLE} AND EXISTS ("
        "SELECT 1 FROM webhooklite_endpoints e WHERE e.id = d.endpoint_id AND e.enabled) "
        "ORDER BY d.next_at, d.id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
        "UPDATE webhooklite_deliveries c SET worker = %(token)s, next_at = %(until)s "
        "FROM due, webhooklite_messages m WHERE c.id = due.id AND m.id = c.message_id "
        "RETURNING c.id, c.message_id, m.event, m.body, c.tries"
    ),
    "held": f"SELECT id, worker, state FROM webhooklite_deliveries WHERE id = {_IDS}",
    "renew": (
        "UPDATE webhooklite_deliveries SET next_at = %(until)s "
        f"WHERE worker = %(token)s AND state = 'pending' AND id = {_IDS}"
    ),
    "release": (
        "UPDATE webhooklite_deliveries SET worker = NULL, next_at = %(now)s "
        f"WHERE worker = %(token)s AND state = 'pending' AND id = {_IDS}"
    ),
    "log_attempts": (
        "INSERT INTO webhooklite_attempts (delivery_id, at, status, duration, response, error, worker) "
        "SELECT * FROM unnest(%s::bigint[], %s::float8[], %s::int[], %s::float8[], %s::bytea[], %s::text[], %s::text[])"
    ),
    "delivered": (
        "UPDATE webhooklite_deliveries SET state = 'delivered', next_at = NULL, worker = NULL, tries = tries + 1, "
        "attempts = attempts + 1, last_status = %(status)s, last_error = NULL, updated = %(now)s "
        f"WHERE state <> 'delivered' AND id = {_IDS}"
    ),
    "failed": (
        "UPDATE webhooklite_deliveries SET attempts = attempts + 1, last_status = %(status)s, "
        "last_error = %(error)s, updated = %(now)s WHERE id = %(id)s"
    ),
    "retry_later": (
        "UPDATE webhooklite_deliveries SET next_at = %(due)s, worker = NULL, tries = %(tries)s "
        "WHERE id = %(id)s AND worker = %(token)s AND state = 'pending'"
    ),
    "give_up": (
        "UPDATE webhooklite_deliveries SET state = 'dead', next_at = NULL, worker = NULL, tries = %(tries)s "
        "WHERE id = %(id)s AND worker = %(token)s AND state = 'pending'"
    ),
    "close_endpoint": (  # once: a second 410 keeps the first reason
        "UPDATE webhooklite_endpoints SET enabled = false, disabled_reason = %(reason)s, version = version + 1 "
        "WHERE id = %(id)s AND enabled"
    ),
    "bury_one": (
        "UPDATE webhooklite_deliveries SET state = 'dead', next_at = NULL, worker = NULL, updated = %(now)s "
        "WHERE id = %(id)s AND state = 'pending'"
    ),
    "bury_endpoint": (
        "UPDATE webhooklite_deliveries SET state = 'dead', next_at = NULL, worker = NULL, updated = %(now)s, "
        "last_error = %(error)s WHERE endpoint_id = %(id)s AND state = 'pending' RETURNING id"
    ),

    # -- endpoints
    "endpoint_config": f"{CONFIG} WHERE id = %(id)s",
    "endpoint_find": f"{CONFIG} WHERE tenant = %(tenant)s AND url = %(url)s",
    "endpoints_by_url": "SELECT id, tenant FROM webhooklite_endpoints WHERE url = %(url)s ORDER BY id",
    "endpoint_insert": (
        "INSERT INTO webhooklite_endpoints (tenant, url, secret, scheme, events, headers, timeout, created) "
        "VALUES (%(tenant)s, %(url)s, %(secret)s, %(scheme)s, %(events)s, %(headers)s, %(timeout)s, %(now)s) "
        "ON CONFLICT (tenant, url) DO NOTHING"
    ),
    "endpoint_update": (
        "UPDATE webhooklite_endpoints SET url = %(url)s, secret = %(secret)s, scheme = %(scheme)s, "
        "events = %(events)s, headers = %(headers)s, timeout = %(timeout)s, version = version + 1 WHERE id = %(id)s"
    ),
    "endpoint_disable": (
        "UPDATE webhooklite_endpoints SET enabled = false, disabled_reason = %(reason)s, version = version + 1 "
        "WHERE id = %(id)s"
    ),
    "endpoint_enable": (  # a fresh start for its health too
        "UPDATE webhooklite_endpoints SET enabled = true, disabled_reason = NULL, failing_since = NULL, "
        "version = version + 1 WHERE id = %(id)s"
    ),
    "endpoints": f"{ENDPOINT} ORDER BY id",
    "remove_attempts": (
        "DELETE FROM webhooklite_attempts WHERE delivery_id IN "
        "(SELECT id FROM webhooklite_deliveries WHERE endpoint_id = %(id)s)"
    ),
    "remove_deliveries": "DELETE FROM webhooklite_deliveries WHERE endpoint_id = %(id)s",
    "remove_endpoint": "DELETE FROM webhooklite_endpoints WHERE id = %(id)s",

    # -- inspecting
    "deliveries": DELIVERY,
    "where_pending": "d.state = 'pending'",
    "where_delivered": "d.state = 'delivered'",
    "where_dead": "d.state = 'dead'",
    "where_endpoint": "d.endpoint_id = %(endpoint)s",
    "where_message": "d.message_id = %(message)s",
    "where_before": "d.id < %(before)s",
    "where_ids": f"d.id = {_IDS}",
    "newest_first": "ORDER BY d.id DESC LIMIT %(limit)s",
    "delivery": f"{DELIVERY} WHERE d.id = %(id)s",
    "attempts": (
        "SELECT at, status, duration, response, error, worker FROM webhooklite_attempts "
        "WHERE delivery_id = %(id)s ORDER BY id"
    ),
    "retry_check": (
        "SELECT d.state, e.enabled, e.url FROM webhooklite_deliveries d "
        "LEFT JOIN webhooklite_endpoints e ON e.id = d.endpoint_id WHERE d.id = %(id)s"
    ),
    "retry": (
        "UPDATE webhooklite_deliveries SET state = 'pending', next_at = %(now)s, worker = NULL, tries = 0, "
        "updated = %(now)s WHERE id = %(id)s"
    ),
    "retry_waiting": (  # a pending one waiting for its next attempt (not claimed): due now, same schedule
        "UPDATE webhooklite_deliveries SET next_at = %(now)s, updated = %(now)s "
        "WHERE id = %(id)s AND state = 'pending' AND (worker IS NULL OR next_at < %(now)s)"
    ),
    "stats_endpoints": (
        "SELECT id, url, enabled, tenant, disabled_reason, last_success, failing_since FROM webhooklite_endpoints "
        "ORDER BY id"
    ),
    # The newest attempts since :since (at most :cap), per endpoint: how many, how many got a 2xx, and the
    # nearest-rank p50 and p99 of their durations (as on sqlite, so both give the same figures).
    "stats_recent": (
        "WITH recent AS (SELECT d.endpoint_id AS eid, a.status AS status, a.duration AS duration "
        "FROM webhooklite_attempts a JOIN webhooklite_deliveries d ON d.id = a.delivery_id "
        "WHERE a.at >= %(since)s ORDER BY a.at DESC LIMIT %(cap)s), "
        "ranked AS (SELECT eid, status, duration, row_number() OVER (PARTITION BY eid ORDER BY duration) AS r, "
        "count(*) OVER (PARTITION BY eid) AS n FROM recent) "
        "SELECT eid, max(n), sum(CASE WHEN status >= 200 AND status < 300 THEN 1 ELSE 0 END), "
        "max(CASE WHEN r = (n * 50 + 99) / 100 THEN duration END), "
        "max(CASE WHEN r = (n * 99 + 99) / 100 THEN duration END) FROM ranked GROUP BY eid"
    ),
    "gauges": (
        "SELECT endpoint_id, 'pending', count(*) FROM webhooklite_deliveries WHERE state = 'pending' "
        "GROUP BY endpoint_id UNION ALL SELECT endpoint_id, 'dead', count(*) FROM webhooklite_deliveries "
        "WHERE state = 'dead' GROUP BY endpoint_id"
    ),
    # -- endpoint health (see the sqlite queries): a row is only written (so locked) when it changes,
    # or at most once a second for a busy endpoint's last success.
    "health_ok": (
        "UPDATE webhooklite_endpoints SET last_success = GREATEST(last_success, %(at)s), "
        "failing_since = CASE WHEN failing_since > %(at)s THEN failing_since ELSE NULL END "
        "WHERE id = %(id)s AND (failing_since IS NOT NULL OR last_success IS NULL OR last_success < %(fresh)s)"
    ),
    "health_failed": (
        "UPDATE webhooklite_endpoints SET failing_since = %(at)s WHERE id = %(id)s "
        "AND (last_success IS NULL OR last_success < %(at)s) AND (failing_since IS NULL OR failing_since > %(at)s)"
    ),
    "health_check": (
        "SELECT failing_since FROM webhooklite_endpoints WHERE id = %(id)s AND enabled AND failing_since <= %(cutoff)s"
    ),
    # Once: under READ COMMITTED a second UPDATE waits for the first's row lock, then re-checks
    # "enabled" on the new row and changes nothing.
    "health_disable": (
        "UPDATE webhooklite_endpoints SET enabled = false, disabled_reason = %(reason)s, version = version + 1 "
        "WHERE id = %(id)s AND enabled AND failing_since <= %(cutoff)s"
    ),
    "recover": (
        "UPDATE webhooklite_deliveries SET state = 'pending', next_at = %(now)s, worker = NULL, tries = 0, "
        "updated = %(now)s WHERE state = 'dead' AND updated >= %(since)s AND endpoint_id IN "
        "(SELECT id FROM webhooklite_endpoints WHERE enabled)"
    ),
    "recover_one": (
        "UPDATE webhooklite_deliveries SET state = 'pending', next_at = %(now)s, worker = NULL, tries = 0, "
        "updated = %(now)s WHERE state = 'dead' AND updated >= %(since)s AND endpoint_id = %(endpoint)s"
    ),
    "recover_skipped": (
        "SELECT d.endpoint_id, count(*) FROM webhooklite_deliveries d JOIN webhooklite_endpoints e "
        "ON e.id = d.endpoint_id WHERE d.state = 'dead' AND d.updated >= %(since)s AND NOT e.enabled "
        "GROUP BY d.endpoint_id"
    ),
    "stats_counts": "SELECT endpoint_id, state, count(*) FROM webhooklite_deliveries GROUP BY endpoint_id, state",
    "pending": (
        "SELECT count(*) FROM webhooklite_deliveries d JOIN webhooklite_endpoints e ON e.id = d.endpoint_id "
        "WHERE d.state = 'pending' AND e.enabled"
    ),
    "any_pending": (
        "SELECT 1 FROM webhooklite_endpoints e WHERE e.enabled AND EXISTS ("
        "SELECT 1 FROM webhooklite_deliveries d WHERE d.endpoint_id = e.id AND d.state = 'pending') LIMIT 1"
    ),
    "any_due": (
        "SELECT 1 FROM webhooklite_endpoints e WHERE e.enabled AND EXISTS ("
        f"SELECT 1 FROM webhooklite_deliveries d WHERE d.endpoint_id = e.id AND {_CLAIMABLE}) LIMIT 1"
    ),
    "purge_attempts": (
        "DELETE FROM webhooklite_attempts WHERE delivery_id IN "
        "(SELECT id FROM webhooklite_deliveries WHERE state = 'delivered' AND updated < %(cutoff)s)"
    ),
    "purge_deliveries": "DELETE FROM webhooklite_deliveries WHERE state = 'delivered' AND updated < %(cutoff)s",
    "orphan_messages": (
        "DELETE FROM webhooklite_messages m WHERE NOT EXISTS "
        "(SELECT 1 FROM webhooklite_deliveries d WHERE d.message_id = m.id)"
    ),
    "orphan_attempts": (
        "DELETE FROM webhooklite_attempts a WHERE NOT EXISTS "
        "(SELECT 1 FROM webhooklite_deliveries d WHERE d.id = a.delivery_id)"
    ),
    "notify": "SELECT pg_notify(%(channel)s, %(schema)s)",
}}


#: PostgresStore (webhooklite/pgstore.py): a receiver's handled ids, shared by hosts. Times are the
#: database's clock (``clock_timestamp()``), so hosts with skewed clocks still agree on expiry.
STORE_SCHEMA = """
CREATE TABLE webhooklite_handled (
    id text PRIMARY KEY,
    done boolean NOT NULL,
    token text,
    at double precision NOT NULL
);
CREATE INDEX webhooklite_handled_at ON webhooklite_handled (at)
"""

SCHEMAS: Dict[str, Tuple[int, str]] = {
    "outbox": (OUTBOX_VERSION, OUTBOX_SCHEMA + ";\n" + OUTBOX_2_TO_3), "store": (1, STORE_SCHEMA),
}
#: (part, version) -> the script that takes its tables to the next version, in place.
MIGRATIONS: Dict[Tuple[str, int], str] = {("outbox", 2): OUTBOX_2_TO_3}

_NOW = "extract(epoch FROM clock_timestamp())"

QUERIES["store"] = {
    # New, or a busy mark abandoned for busy_for, or a done mark forgotten after keep: claim it with our token.
    # Our own token's busy mark too: the same begin run again, after the connection was cut as it answered.
    "begin": (
        f"INSERT INTO webhooklite_handled AS h (id, done, token, at) VALUES (%(id)s, false, %(token)s, {_NOW}) "
        "ON CONFLICT (id) DO UPDATE SET done = false, token = excluded.token, at = excluded.at "
        f"WHERE (NOT h.done AND (h.at < {_NOW} - %(busy_for)s OR h.token = excluded.token)) "
        f"OR (h.done AND h.at < {_NOW} - %(keep)s) "
        "RETURNING token"
    ),
    "state": "SELECT done FROM webhooklite_handled WHERE id = %(id)s",
    # The handlers succeeded: done, whoever claims it now.
    "commit": (
        f"INSERT INTO webhooklite_handled (id, done, token, at) VALUES (%(id)s, true, NULL, {_NOW}) "
        "ON CONFLICT (id) DO UPDATE SET done = true, token = NULL, at = excluded.at"
    ),
    # Only our own claim: a late abort never frees an id another process took over meanwhile.
    "abort": "DELETE FROM webhooklite_handled WHERE id = %(id)s AND NOT done AND token = %(token)s",
    "purge": (
        f"DELETE FROM webhooklite_handled WHERE (done AND at < {_NOW} - %(keep)s) "
        f"OR (NOT done AND at < {_NOW} - %(busy_for)s)"
    ),
    "count": f"SELECT count(*) FROM webhooklite_handled WHERE done AND at >= {_NOW} - %(keep)s",
}


# -- drivers -------------------------------------------------------------------------------

#: A connection's ``info.transaction_status`` inside a transaction that a failed statement aborted
#: (INERROR: the same number in psycopg 3 and psycopg2).
_IN_ERROR = 3


class _Driver:
    """What differs between psycopg 3 and psycopg2, in one place."""

    def __init__(self, module: Any) -> None:
        global _ERRORS
        self.module = module
        self.name = module.__name__  # "psycopg" or "psycopg2"
        if module.Error not in _ERRORS:
            _ERRORS = _ERRORS + (module.Error,)

    def connect(self, url: str) -> Any:
        extra: Dict[str, Any] = {}
        if "connect_timeout" not in url:
            extra["connect_timeout"] = 5
        if "application_name" not in url:
            extra["application_name"] = "webhooklite"
        if "keepalives" not in url:  # a peer that vanished (no FIN) is noticed within about 25 s
            extra.update(keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3)
        conn = self.module.connect(url, **extra)
        conn.autocommit = True
        return conn

    def broken(self, conn: Any) -> bool:
        return bool(conn.closed) or bool(getattr(conn, "broken", False))

    def autocommit(self, conn: Any) -> bool:
        """Whether a statement on ``conn`` would commit on its own: autocommit, and no BEGIN open."""
        idle = int(getattr(getattr(conn, "info", None), "transaction_status", 0)) == 0  # 0: IDLE in both drivers
        return bool(conn.autocommit) and idle

    def listen(self, conn: Any, channel: str, seen: Callable[[str], None], stop: Any) -> Callable[[float], None]:
        """LISTEN on ``conn``; return ``wait(timeout)``, which hands each notification's payload to
        ``seen``, and returns early when ``stop`` (selectable) is set."""
        if self.name == "psycopg":
            conn.add_notify_handler(lambda n: seen(n.payload))
            conn.execute(f'LISTEN "{channel}"')

            def wait3(timeout: float) -> None:
                if conn.fileno() in select.select([conn.fileno(), stop], [], [], timeout)[0]:
                    conn.execute("SELECT 1")  # reads what arrived; the handler sees each notification

            return wait3
        with conn.cursor() as cur:
            cur.execute(f'LISTEN "{channel}"')

        def wait2(timeout: float) -> None:
            if conn in select.select([conn, stop], [], [], timeout)[0]:
                conn.poll()
                while conn.notifies:
                    seen(conn.notifies.pop(0).payload)

        return wait2


_DRIVERS: Dict[str, _Driver] = {}


def driver(name: Optional[str] = None) -> _Driver:
    """psycopg 3, else psycopg2 (or the one named), imported now; ImportError saying what to install."""
    for candidate in ([name] if name else ["psycopg", "psycopg2"]):
        if candidate in _DRIVERS:
            return _DRIVERS[candidate]
        try:
            module = __import__(candidate)
        except ImportError:
            continue
        _DRIVERS[candidate] = _Driver(module)
        return _DRIVERS[candidate]
    raise ImportError(
        "PostgreSQL needs a driver, and neither psycopg (3) nor psycopg2 is installed: "
        "pip install 'webhooklite[postgres]' (which installs psycopg[binary]), or pip install psycopg2-binary"
    )


def _driver_of(conn: Any) -> Optional[_Driver]:
    kind = type(conn).__module__.split(".")[0]
    return driver(kind) if kind in ("psycopg", "psycopg2") else None


class PostgresBackend(Backend):
    """A PostgreSQL database, by URL or by a DB-API connection factory (psycopg 3 or psycopg2)."""

    dialect = "postgresql"
    queries = QUERIES

    def __init__(self, url: Optional[str] = None, *, connect: Optional[Callable[[], Any]] = None,
                 first: Any = None) -> None:
        self.url = url
        self._factory = connect
        self._first = first  # the factory's first connection, made to learn its driver: used first
        if url is not None:
            self._driver = driver()
            self.where = describe_target(url)
        else:
            found = _driver_of(first)
            assert found is not None
            self._driver = found
            self.where = self._describe(first)
        self._schema: Optional[str] = None

    @staticmethod
    def _describe(conn: Any) -> str:
        info: Any = getattr(conn, "info", None)
        try:
            return f"postgresql://{info.host}:{info.port}/{info.dbname}"
        except Exception:
            return "PostgreSQL (connect=)"

    def connect(self, durable: bool = True) -> Any:
        if self._first is not None:
            conn, self._first = self._first, None
            conn.autocommit = True
            return conn
        try:
            if self._factory is not None:
                conn = self._factory()
                conn.autocommit = True
                return conn
            assert self.url is not None
            return self._driver.connect(self.url)
        except _ERRORS as e:
            raise self.error(e) from e

    def broken(self, conn: Any) -> bool:
        d = _driver_of(conn)
        return d is not None and d.broken(conn)

    def commit(self, conn: Any) -> None:
        """As every backend's; and a transaction PostgreSQL has already aborted (a statement in it failed,
        and the caller caught the error and went on, in ``Outbox.batch()``) is rolled back with an error:
        COMMIT would roll it back without one, and what the block sent would be lost in silence."""
        if int(getattr(getattr(conn, "info", None), "transaction_status", 0)) == _IN_ERROR:
            self.rollback(conn)
            raise StorageError("the transaction was aborted by a statement that failed in it: nothing in it was "
                               "stored (PostgreSQL refuses every statement after a failed one, COMMIT too)")
        super().commit(conn)

    def execute(self, conn: Any, sql: str, params: Any = None) -> int:
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params or None)
                return int(cur.rowcount)
        except _ERRORS as e:
            raise self.error(e) from e

    def fetchall(self, conn: Any, sql: str, params: Any = None) -> List[Tuple[Any, ...]]:
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params or None)
                return [tuple(r) for r in cur.fetchall()]
        except _ERRORS as e:
            raise self.error(e) from e

    def insert_rows(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.execute(conn, sql, [list(column) for column in zip(*rows)])

    def insert_new(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> Set[Any]:
        if not rows:
            return set()
        return {r[0] for r in self.fetchall(conn, sql, [list(column) for column in zip(*rows)])}

    def ids(self, values: Iterable[Any]) -> Any:
        return list(values)

    def ensure_schema(self, conn: Any, part: str) -> None:
        if part not in SCHEMAS:
            raise ValueError(f"no schema for {part!r}")
        want, script = SCHEMAS[part]
        version = self._version(conn, part)
        if version != want:
            with self.transaction(conn):
                self.execute(conn, "SELECT pg_advisory_xact_lock(%(lock)s)", {"lock": _LOCK})
                version = self._version(conn, part)  # again, under the lock
                if version is not None and version > want:
                    raise ValueError(f"{self.where} was written by a newer webhooklite ({part} schema {version})")
                if version is None:
                    self.execute(conn, SCHEMA_TABLE)
                    self._script(conn, script)
                    self.execute(conn, "INSERT INTO webhooklite_schema (part, version) VALUES (%(part)s, %(v)s)",
                                 {"part": part, "v": want})
                elif version < want:  # in place, step by step, in this one transaction
                    for v in range(version, want):
                        self._script(conn, MIGRATIONS[(part, v)])
                    self.execute(conn, "UPDATE webhooklite_schema SET version = %(v)s WHERE part = %(part)s",
                                 {"part": part, "v": want})
        if part in _QUEUE_TABLE:  # notifications carry the schema of the tables, so listeners filter on it
            row = self.fetchone(conn, "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                      f"WHERE c.oid = '{_QUEUE_TABLE[part]}'::regclass")
            self._schema = row[0] if row else None

    def _script(self, conn: Any, script: str) -> None:
        for statement in script.split(";\n"):
            if statement.strip():
                self.execute(conn, statement)

    def parts(self, conn: Any) -> Dict[str, int]:
        if self.fetchone(conn, "SELECT to_regclass('webhooklite_schema')")[0] is None:  # type: ignore[index]
            return {}
        return {str(p): int(v) for p, v in self.fetchall(conn, "SELECT part, version FROM webhooklite_schema")}

    def _version(self, conn: Any, part: str) -> Optional[int]:
        if self.fetchone(conn, "SELECT to_regclass('webhooklite_schema')")[0] is None:  # type: ignore[index]
            return None
        row = self.fetchone(conn, "SELECT version FROM webhooklite_schema WHERE part = %(part)s", {"part": part})
        return None if row is None else int(row[0])

    def notify(self, conn: Any, part: str) -> None:
        self.execute(conn, QUERIES[part]["notify"], {"channel": CHANNEL[part], "schema": self._schema or ""})

    def listen(self, part: str, wake: Callable[[], None], stop: Any) -> Any:
        thread = threading.Thread(target=self._listen, args=(part, wake, stop), name=f"webhooklite-{part}-listen",
                                  daemon=True)
        thread.start()
        return thread

    def _listen(self, part: str, wake: Callable[[], None], stop: Any) -> None:
        """Wake the crew on each notification for our schema; reconnect after errors (and wake: one may be missed)."""
        failures = 0
        while not stop.is_set():
            conn = None
            try:
                conn = self._driver.connect(self.url) if self.url else self.connect()
                schema = self._schema

                def seen(payload: str) -> None:
                    if not schema or payload == schema:
                        wake()

                wait = _driver_of(conn).listen(conn, CHANNEL[part], seen, stop)  # type: ignore[union-attr]
                if failures:
                    wake()
                failures = 0
                while not stop.is_set():
                    wait(0.5)
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning("webhooklite: the LISTEN connection failed (%s); reconnecting", exc)
                stop.wait(min(2.0, 0.1 * 2 ** min(failures, 5)))
            finally:
                if conn is not None:
                    self.close(conn)

    def adopt(self, conn: Any) -> Any:
        d = _driver_of(conn)
        if d is None:
            raise ValueError(
                f"conn= is a {type(conn).__module__}.{type(conn).__name__}, but this outbox is on PostgreSQL "
                f"({self.where}): give a psycopg or psycopg2 connection to that database"
            )
        if d.autocommit(conn):
            raise ValueError(
                "conn= is in autocommit mode, so the message would commit on its own: send inside your "
                "transaction (autocommit off, or `with conn.transaction():`), then commit it with your changes"
            )
        return conn

    def error(self, exc: BaseException) -> StorageError:
        text = " ".join(str(exc).split())
        if len(text) > 500:  # libpq repeats "another command is already in progress" once per retry
            text = text[:500] + "..."
        # A connection error (OperationalError, InterfaceError and their subclasses, e.g. AdminShutdown)
        # means a new connection: after a failure while *sending*, psycopg may not flag the old one as
        # broken, and every later command on it fails ("another command is already in progress").
        lost = any(isinstance(exc, (d.module.OperationalError, d.module.InterfaceError)) for d in _DRIVERS.values())
        hint = "cannot reach PostgreSQL, or lost the connection" if lost else "PostgreSQL refused"
        err = StorageError(f"{self.where}: {hint} ({text})")
        err.lost = lost
        return err
