"""The inbox's tables and every query it runs, for both databases side by side.

    webhooklite_inbox            one row per received message id: headers, raw body, type, state,
                                 the claim (next_at, worker), tries
    webhooklite_inbox_handlers   one row per event and handler that ran: when it succeeded (done),
                                 how many runs failed, the last error

Importing this module adds the ``"inbox"`` part to ``sqlite.SCHEMAS``/``QUERIES`` and
``postgres.SCHEMAS``/``QUERIES`` (the backends run a part's SQL by name; see
``backends/__init__.py``). The two dialects differ only where they must: parameters
(``:name`` / ``%(name)s``), a list of ids (``json_each`` / ``ANY``), types, and the claim
(sqlite runs it under ``BEGIN IMMEDIATE``, one writer at a time; PostgreSQL picks rows
``FOR UPDATE SKIP LOCKED``).
"""
from typing import Dict

from . import postgres, sqlite

__all__ = ["VERSION", "SQLITE", "POSTGRES"]

VERSION = 1

_SQLITE_SCHEMA = """
CREATE TABLE webhooklite_inbox (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,         -- the id the receiver dedupes on (signed, where the scheme signs one)
    type TEXT,                               -- the event type, by the receiver's scheme
    ts INTEGER,                              -- the signed timestamp (unix seconds), or NULL
    headers TEXT NOT NULL,                   -- JSON: the request's headers, lower-case names
    body BLOB NOT NULL,                      -- the raw body, exactly as received (and verified)
    received REAL NOT NULL,
    state TEXT NOT NULL,                     -- pending, done, dead
    next_at REAL,                            -- due (pending); a claim's lease end while claimed
    worker TEXT,                             -- the claiming worker's token
    tries INTEGER NOT NULL DEFAULT 0,        -- attempts on the current schedule
    attempts INTEGER NOT NULL DEFAULT 0,     -- attempts ever
    last_error TEXT,
    updated REAL NOT NULL
);
CREATE INDEX webhooklite_inbox_due ON webhooklite_inbox (next_at) WHERE state = 'pending';
CREATE INDEX webhooklite_inbox_dead ON webhooklite_inbox (id) WHERE state = 'dead';
CREATE INDEX webhooklite_inbox_received ON webhooklite_inbox (received);
CREATE TABLE webhooklite_inbox_handlers (
    event_id INTEGER NOT NULL,               -- webhooklite_inbox.id
    handler TEXT NOT NULL,                   -- module.qualname (see inbox.handler_name)
    done REAL,                               -- when it succeeded; NULL: not yet
    failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (event_id, handler)
);
"""

_S_IDS = "(SELECT value FROM json_each(:ids))"
_S_DONE = "(SELECT group_concat(h.handler, char(10)) FROM webhooklite_inbox_handlers h WHERE h.event_id = i.id AND h.done IS NOT NULL)"
_S_EVENT = (
    "SELECT i.id, i.message_id, i.type, i.state, i.attempts, i.tries, i.next_at, i.last_error, i.received, "
    "i.updated, i.ts, i.headers, i.body FROM webhooklite_inbox i"
)

SQLITE: Dict[str, str] = {
    # Rows (message id, type, ts, headers, body, now), for backend.insert_new.
    "put": (
        "INSERT INTO webhooklite_inbox (message_id, type, ts, headers, body, received, state, next_at, updated) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?6, ?6) ON CONFLICT (message_id) DO NOTHING"
    ),
    # -- the engine's queue: one lane
    "first_due": "SELECT min(next_at) FROM webhooklite_inbox WHERE state = 'pending'",
    "claim": (
        f"SELECT i.id, i.message_id, i.type, i.ts, i.headers, i.body, i.tries, {_S_DONE} FROM webhooklite_inbox i "
        "WHERE i.state = 'pending' AND i.next_at <= :now "
        "ORDER BY i.next_at, i.id LIMIT :limit"
    ),
    "mark_claimed": f"UPDATE webhooklite_inbox SET worker = :token, next_at = :until WHERE id IN {_S_IDS}",
    "held": f"SELECT id, worker, state FROM webhooklite_inbox WHERE id IN {_S_IDS}",
    "renew": f"UPDATE webhooklite_inbox SET next_at = :until WHERE worker = :token AND state = 'pending' AND id IN {_S_IDS}",
    "release": f"UPDATE webhooklite_inbox SET worker = NULL, next_at = :now WHERE worker = :token AND state = 'pending' AND id IN {_S_IDS}",
    # A handler succeeded: recorded at once by the worker that ran it, whoever holds the claim now.
    "handler_done": (
        "INSERT INTO webhooklite_inbox_handlers (event_id, handler, done) VALUES (:id, :handler, :now) "
        "ON CONFLICT (event_id, handler) DO UPDATE SET done = excluded.done"
    ),
    "handlers_done": (  # many (event id, handler, when), for backend.insert_rows
        "INSERT INTO webhooklite_inbox_handlers (event_id, handler, done) VALUES {rows} "
        "ON CONFLICT (event_id, handler) DO UPDATE SET done = excluded.done"
    ),
    "handler_failed": (
        "INSERT INTO webhooklite_inbox_handlers (event_id, handler, failures, last_error) VALUES (:id, :handler, 1, :error) "
        "ON CONFLICT (event_id, handler) DO UPDATE SET failures = failures + 1, last_error = excluded.last_error"
    ),
    "done": (
        "UPDATE webhooklite_inbox SET state = 'done', next_at = NULL, worker = NULL, tries = tries + 1, "
        f"attempts = attempts + 1, last_error = NULL, updated = :now WHERE state = 'pending' AND id IN {_S_IDS}"
    ),
    "failed": "UPDATE webhooklite_inbox SET attempts = attempts + 1, last_error = :error, updated = :now WHERE id = :id",
    "retry_later": (
        "UPDATE webhooklite_inbox SET next_at = :due, worker = NULL, tries = :tries "
        "WHERE id = :id AND worker = :token AND state = 'pending'"
    ),
    "give_up": (
        "UPDATE webhooklite_inbox SET state = 'dead', next_at = NULL, worker = NULL, tries = :tries "
        "WHERE id = :id AND worker = :token AND state = 'pending'"
    ),
    # -- inspecting and operating
    "events": _S_EVENT,
    "where_state": "i.state = :state",
    "where_since": "i.received >= :since",
    "newest_first": "ORDER BY i.id DESC LIMIT :limit",
    "event": f"{_S_EVENT} WHERE i.id = :id",
    "event_by_message": f"{_S_EVENT} WHERE i.message_id = :message_id",
    "handlers": (
        "SELECT handler, done, failures, last_error FROM webhooklite_inbox_handlers WHERE event_id = :id ORDER BY handler"
    ),
    "retry": (
        "UPDATE webhooklite_inbox SET state = 'pending', next_at = :now, worker = NULL, tries = 0, updated = :now "
        "WHERE id = :id AND state <> 'pending'"
    ),
    "replay_forget": (
        "DELETE FROM webhooklite_inbox_handlers WHERE event_id IN "
        "(SELECT id FROM webhooklite_inbox WHERE received >= :since AND received < :until AND state <> 'pending')"
    ),
    "replay": (
        "UPDATE webhooklite_inbox SET state = 'pending', next_at = :now, worker = NULL, tries = 0, updated = :now "
        "WHERE received >= :since AND received < :until AND state <> 'pending'"
    ),
    "counts": "SELECT state, count(*), min(received) FROM webhooklite_inbox GROUP BY state",
    "handler_counts": (
        "SELECT handler, count(done), sum(failures) FROM webhooklite_inbox_handlers GROUP BY handler ORDER BY handler"
    ),
    "any_pending": "SELECT 1 FROM webhooklite_inbox WHERE state = 'pending' LIMIT 1",
    "any_due": "SELECT 1 FROM webhooklite_inbox WHERE state = 'pending' AND next_at <= :now LIMIT 1",
    "purge_handlers": (
        "DELETE FROM webhooklite_inbox_handlers WHERE event_id IN "
        "(SELECT id FROM webhooklite_inbox WHERE state = 'done' AND updated < :cutoff)"
    ),
    "purge": "DELETE FROM webhooklite_inbox WHERE state = 'done' AND updated < :cutoff",
}

_POSTGRES_SCHEMA = """
CREATE TABLE webhooklite_inbox (
    id BIGSERIAL PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    type TEXT,
    ts BIGINT,
    headers TEXT NOT NULL,
    body BYTEA NOT NULL,
    received DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    next_at DOUBLE PRECISION,
    worker TEXT,
    tries INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated DOUBLE PRECISION NOT NULL
);
CREATE INDEX webhooklite_inbox_due ON webhooklite_inbox (next_at) WHERE state = 'pending';
CREATE INDEX webhooklite_inbox_dead ON webhooklite_inbox (id) WHERE state = 'dead';
CREATE INDEX webhooklite_inbox_received ON webhooklite_inbox (received);
CREATE TABLE webhooklite_inbox_handlers (
    event_id BIGINT NOT NULL,
    handler TEXT NOT NULL,
    done DOUBLE PRECISION,
    failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (event_id, handler)
);
"""

_P_IDS = "ANY(%(ids)s)"
_P_DONE = (
    "(SELECT string_agg(h.handler, chr(10)) FROM webhooklite_inbox_handlers h "
    "WHERE h.event_id = c.id AND h.done IS NOT NULL)"
)

POSTGRES: Dict[str, str] = {
    "put": (
        "INSERT INTO webhooklite_inbox (message_id, type, ts, headers, body, received, state, next_at, updated) "
        "SELECT m, t, s, h, b, r, 'pending', r, r "
        "FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::bytea[], %s::float8[]) AS u(m, t, s, h, b, r) "
        "ON CONFLICT (message_id) DO NOTHING RETURNING message_id"
    ),
    "first_due": "SELECT min(next_at) FROM webhooklite_inbox WHERE state = 'pending'",
    "claim": (
        "WITH due AS (SELECT id FROM webhooklite_inbox WHERE state = 'pending' AND next_at <= %(now)s "
        "ORDER BY next_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
        "UPDATE webhooklite_inbox c SET worker = %(token)s, next_at = %(until)s FROM due WHERE c.id = due.id "
        f"RETURNING c.id, c.message_id, c.type, c.ts, c.headers, c.body, c.tries, {_P_DONE}"
    ),
    "held": f"SELECT id, worker, state FROM webhooklite_inbox WHERE id = {_P_IDS}",
    "renew": (
        "UPDATE webhooklite_inbox SET next_at = %(until)s "
        f"WHERE worker = %(token)s AND state = 'pending' AND id = {_P_IDS}"
    ),
    "release": (
        "UPDATE webhooklite_inbox SET worker = NULL, next_at = %(now)s "
        f"WHERE worker = %(token)s AND state = 'pending' AND id = {_P_IDS}"
    ),
    "handler_done": (
        "INSERT INTO webhooklite_inbox_handlers (event_id, handler, done) VALUES (%(id)s, %(handler)s, %(now)s) "
        "ON CONFLICT (event_id, handler) DO UPDATE SET done = excluded.done"
    ),
    "handlers_done": (
        "INSERT INTO webhooklite_inbox_handlers (event_id, handler, done) "
        "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::float8[]) "
        "ON CONFLICT (event_id, handler) DO UPDATE SET done = excluded.done"
    ),
    "handler_failed": (
        "INSERT INTO webhooklite_inbox_handlers AS h (event_id, handler, failures, last_error) "
        "VALUES (%(id)s, %(handler)s, 1, %(error)s) "
        "ON CONFLICT (event_id, handler) DO UPDATE SET failures = h.failures + 1, last_error = excluded.last_error"
    ),
    "done": (
        "UPDATE webhooklite_inbox SET state = 'done', next_at = NULL, worker = NULL, tries = tries + 1, "
        f"attempts = attempts + 1, last_error = NULL, updated = %(now)s WHERE state = 'pending' AND id = {_P_IDS}"
    ),
    "failed": (
        "UPDATE webhooklite_inbox SET attempts = attempts + 1, last_error = %(error)s, updated = %(now)s "
        "WHERE id = %(id)s"
    ),
    "retry_later": (
        "UPDATE webhooklite_inbox SET next_at = %(due)s, worker = NULL, tries = %(tries)s "
        "WHERE id = %(id)s AND worker = %(token)s AND state = 'pending'"
    ),
    "give_up": (
        "UPDATE webhooklite_inbox SET state = 'dead', next_at = NULL, worker = NULL, tries = %(tries)s "
        "WHERE id = %(id)s AND worker = %(token)s AND state = 'pending'"
    ),
    "events": _S_EVENT,
    "where_state": "i.state = %(state)s",
    "where_since": "i.received >= %(since)s",
    "newest_first": "ORDER BY i.id DESC LIMIT %(limit)s",
    "event": f"{_S_EVENT} WHERE i.id = %(id)s",
    "event_by_message": f"{_S_EVENT} WHERE i.message_id = %(message_id)s",
    "handlers": (
        "SELECT handler, done, failures, last_error FROM webhooklite_inbox_handlers WHERE event_id = %(id)s "
        "ORDER BY handler"
    ),
    "retry": (
        "UPDATE webhooklite_inbox SET state = 'pending', next_at = %(now)s, worker = NULL, tries = 0, "
        "updated = %(now)s WHERE id = %(id)s AND state <> 'pending'"
    ),
    "replay_forget": (
        "DELETE FROM webhooklite_inbox_handlers WHERE event_id IN (SELECT id FROM webhooklite_inbox "
        "WHERE received >= %(since)s AND received < %(until)s AND state <> 'pending')"
    ),
    "replay": (
        "UPDATE webhooklite_inbox SET state = 'pending', next_at = %(now)s, worker = NULL, tries = 0, "
        "updated = %(now)s WHERE received >= %(since)s AND received < %(until)s AND state <> 'pending'"
    ),
    "counts": "SELECT state, count(*), min(received) FROM webhooklite_inbox GROUP BY state",
    "handler_counts": (
        "SELECT handler, count(done), sum(failures) FROM webhooklite_inbox_handlers GROUP BY handler ORDER BY handler"
    ),
    "any_pending": "SELECT 1 FROM webhooklite_inbox WHERE state = 'pending' LIMIT 1",
    "any_due": (
        "SELECT 1 FROM webhooklite_inbox WHERE state = 'pending' AND next_at <= %(now)s LIMIT 1"
    ),
    "purge_handlers": (
        "DELETE FROM webhooklite_inbox_handlers WHERE event_id IN "
        "(SELECT id FROM webhooklite_inbox WHERE state = 'done' AND updated < %(cutoff)s)"
    ),
    "purge": "DELETE FROM webhooklite_inbox WHERE state = 'done' AND updated < %(cutoff)s",
    "notify": "SELECT pg_notify(%(channel)s, %(schema)s)",
}

sqlite.SCHEMAS["inbox"] = (VERSION, _SQLITE_SCHEMA)
sqlite.QUERIES["inbox"] = SQLITE
postgres.SCHEMAS["inbox"] = (VERSION, _POSTGRES_SCHEMA)
postgres.QUERIES["inbox"] = POSTGRES
postgres.CHANNEL["inbox"] = "webhooklite_inbox"
