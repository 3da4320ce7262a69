"""The inbox's tables: the engine's queue (claim, settle, renew, release) and the admin operations.

The Python that calls the inbox's *named* queries, once for both databases; the SQL is in
``backends/inbox_sql.py``. Every method takes the connection to run on; none commits (the
caller wraps writes in ``backend.transaction(conn)``).
"""
import json
import time
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

from .backends import Backend
from .backends import inbox_sql  # noqa: F401  (adds the inbox's part to both backends)
from .engine import DEAD, RETRY, Job, Settled

__all__ = ["InboxStore", "LANE", "PENDING", "DONE", "DEAD_STATE"]

PENDING, DONE, DEAD_STATE = "pending", "done", "dead"
#: The inbox's one lane: every event, whichever handlers it has.
LANE = "inbox"

Row = Tuple[Any, ...]
_NONE: FrozenSet[str] = frozenset()  # no handler has succeeded yet (most events, when claimed)


class InboxStore:
    """The inbox's side of a backend. ``budget`` is the seconds one event's handlers may take (the lease outlasts it)."""

    part = "inbox"

    def __init__(self, backend: Backend, budget: float) -> None:
        self.b = backend
        self.q = backend.queries[self.part]
        self.budget = budget

    # -- the engine's queue ----------------------------------------------------------------

    def connect(self) -> Any:
        return self.b.connect(durable=False)

    def disconnect(self, conn: Any) -> None:
        self.b.close(conn)

    def transaction(self, conn: Any) -> Any:
        return self.b.transaction(conn)

    def lanes(self, conn: Any) -> Dict[Any, Tuple[Any, float]]:
        return {LANE: (None, self.budget)}

    def first_due(self, conn: Any, lanes: Sequence[Any]) -> Dict[Any, Optional[float]]:
        row = self.b.fetchone(conn, self.q["first_due"])
        return {LANE: row[0] if row else None}

    def claim(self, conn: Any, token: str, lane: Any, limit: int, now: float, until: float) -> List[Job]:
        args = {"now": now, "limit": limit, "token": token, "until": until}
        rows = self.b.fetchall(conn, self.q["claim"], args)
        if rows and "mark_claimed" in self.q:  # sqlite: no UPDATE ... RETURNING before 3.35
            self.b.execute(conn, self.q["mark_claimed"], dict(args, ids=self.b.ids(r[0] for r in rows)))
        rows.sort(key=lambda r: r[0])  # in the order received
        return [
            Job(i, LANE, tries, (mid, etype, ts, headers, bytes(body), frozenset(done.split("\n")) - {""} if done else _NONE))
            for i, mid, etype, ts, headers, body, tries, done in rows
        ]

    def settle(self, conn: Any, token: str, settled: List[Settled]) -> Set[Any]:
        """Record each handler's run (successes again: the worker wrote them at once, unless it could not),
        then move each event on: done, retried later, or dead."""
        b, q = self.b, self.q
        now = time.time()
        done_ids = []
        successes = []
        for s in settled:
            for name, ok, error, _ in s.outcome.detail or ():
                if ok:
                    successes.append((s.job.id, name, now))
                else:
                    b.execute(conn, q["handler_failed"], {"id": s.job.id, "handler": name, "error": error})
            if s.outcome.ok:
                done_ids.append(s.job.id)
                continue
            b.execute(conn, q["failed"], {"error": s.outcome.error, "now": now, "id": s.job.id})
            if s.verdict == DEAD:
                b.execute(conn, q["give_up"], {"tries": s.tries, "id": s.job.id, "token": token})
            elif s.verdict == RETRY:
                b.execute(conn, q["retry_later"], {"due": s.due, "tries": s.tries, "id": s.job.id, "token": token})
        b.insert_rows(conn, q["handlers_done"], successes)  # one statement for the batch, not one a success
        if done_ids:
            b.execute(conn, q["done"], {"now": now, "ids": b.ids(done_ids)})
        return set()

    def renew(self, conn: Any, token: str, ids: Sequence[int], until: float) -> Tuple[Set[int], int]:
        b, q = self.b, self.q
        found = {r[0]: (r[1], r[2]) for r in b.fetchall(conn, q["held"], {"ids": b.ids(ids)})}
        lost: Set[int] = set()
        taken = 0
        for i in ids:
            worker, state = found.get(i, (None, None))
            if worker != token or state != PENDING:
                lost.add(i)
                taken += worker is not None and worker != token
        b.execute(conn, q["renew"], {"until": until, "token": token, "ids": b.ids(ids)})
        return lost, taken

    def release(self, conn: Any, token: str, ids: Sequence[int], now: float) -> None:
        self.b.execute(conn, self.q["release"], {"now": now, "token": token, "ids": self.b.ids(ids)})

    def listen(self, wake: Callable[[], None], stop: Any) -> Any:
        return self.b.listen(self.part, wake, stop)

    # -- receiving ---------------------------------------------------------------------------

    def put_many(self, conn: Any, rows: Sequence[Tuple[Any, ...]]) -> List[bool]:
        """Store verified deliveries ``(message id, type, timestamp, headers as JSON, body)``; for
        each, False when its id is already stored (a duplicate, also within these rows)."""
        now = time.time()
        inserted = self.b.insert_new(conn, self.q["put"], [row + (now,) for row in rows])
        news = []
        for row in rows:
            news.append(row[0] in inserted)
            inserted.discard(row[0])  # a second copy in the same batch is a duplicate
        return news

    def handler_done(self, conn: Any, event_id: int, name: str) -> None:
        self.b.execute(conn, self.q["handler_done"], {"id": event_id, "handler": name, "now": time.time()})

    def notify(self, conn: Any) -> None:
        self.b.notify(conn, self.part)

    # -- inspecting and operating ------------------------------------------------------------

    def events(self, conn: Any, state: Optional[str], since: Optional[float], limit: int) -> List[Row]:
        where, args = [], {"limit": int(limit)}  # type: List[str], Dict[str, Any]
        if state is not None:
            where.append(self.q["where_state"])
            args["state"] = state
        if since is not None:
            where.append(self.q["where_since"])
            args["since"] = float(since)
        sql = self.q["events"] + (" WHERE " + " AND ".join(where) if where else "") + " " + self.q["newest_first"]
        return self.b.fetchall(conn, sql, args)

    def event(self, conn: Any, event_id: Any) -> Optional[Row]:
        """An int is a row id; a str a message id, else (all digits, as typed at the CLI) a row id."""
        if isinstance(event_id, str):
            row = self.b.fetchone(conn, self.q["event_by_message"], {"message_id": event_id})
            if row is not None or not event_id.isdigit():
                return row
        return self.b.fetchone(conn, self.q["event"], {"id": int(event_id)})

    def handlers(self, conn: Any, event_id: int) -> List[Row]:
        return self.b.fetchall(conn, self.q["handlers"], {"id": event_id})

    def retry(self, conn: Any, event_id: int) -> bool:
        return bool(self.b.execute(conn, self.q["retry"], {"id": event_id, "now": time.time()}))

    def replay(self, conn: Any, since: float, until: float) -> int:
        args = {"since": since, "until": until, "now": time.time()}
        self.b.execute(conn, self.q["replay_forget"], args)
        return self.b.execute(conn, self.q["replay"], args)

    def counts(self, conn: Any) -> Tuple[List[Row], List[Row]]:
        return self.b.fetchall(conn, self.q["counts"]), self.b.fetchall(conn, self.q["handler_counts"])

    def any_pending(self, conn: Any, due_only: bool) -> bool:
        if due_only:
            return self.b.fetchone(conn, self.q["any_due"], {"now": time.time()}) is not None
        return self.b.fetchone(conn, self.q["any_pending"]) is not None

    def purge(self, conn: Any, cutoff: float) -> int:
        self.b.execute(conn, self.q["purge_handlers"], {"cutoff": cutoff})
        return self.b.execute(conn, self.q["purge"], {"cutoff": cutoff})
