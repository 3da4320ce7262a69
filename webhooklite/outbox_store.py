"""The outbox's tables: the engine's queue (claim, settle, renew, release) and the admin operations.

This is the Python that calls the outbox's *named* queries, written once for every database; the
SQL itself is in ``backends/sqlite.py`` and ``backends/postgres.py`` (``QUERIES["outbox"]``).

    webhooklite_endpoints    one row per (tenant, url): secret, scheme, patterns, headers, timeout, enabled,
                             health (last success, failing since)
    webhooklite_messages     one row per message id: event type, body as sent, tenant
    webhooklite_deliveries   one row per message and endpoint: state, next_at, worker (the claim), tries, key
    webhooklite_attempts     one row per attempt: when, status, duration, the answer's first KiB, error

Every method takes the connection to run on: the outbox's own, a dispatcher's, or (for a
transactional send) the caller's. None of them commits: the caller wraps writes in
``backend.transaction(conn)``, or its own transaction.
"""
from __future__ import annotations

import base64
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from .backends import Backend
from .engine import DEAD, RETRY, Job, Settled
from .events import matches

if TYPE_CHECKING:
    from .signing import Secret

__all__ = ["OutboxStore", "PENDING", "DELIVERED", "DEAD_STATE", "SNIPPET", "DIED", "DISABLED", "STATS_CAP",
           "dump_secret", "load_secret"]

log = logging.getLogger("webhooklite")

PENDING, DELIVERED, DEAD_STATE = "pending", "delivered", "dead"
#: How much of a response body the attempt log keeps.
SNIPPET = 1024
#: What ``settle`` reports on a Settled for the outbox's hook: ``(DIED, [delivery ids])``, ``(DISABLED, endpoint id, reason)``.
DIED, DISABLED = "died", "disabled"
#: stats() reads at most this many of the last hour's attempts (the newest): bounded however big the log.
STATS_CAP = 100_000

Row = Tuple[Any, ...]


def dump_secret(secret: Optional[Secret]) -> Optional[str]:
    """A secret (or a list of them, for rotation) as stored: JSON, bytes as ``{"b64": ...}``."""
    if secret is None:
        return None
    items = [secret] if isinstance(secret, (str, bytes)) else list(secret)
    return json.dumps([{"b64": base64.b64encode(s).decode()} if isinstance(s, bytes) else s for s in items])


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _span(seconds: float) -> str:
    """A duration for people: 0.4 s, 90 s, 12 min, 5 h, 5 days."""
    if seconds < 120:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def load_secret(text: Optional[str]) -> Optional[Secret]:
    if text is None:
        return None
    items = [base64.b64decode(x["b64"]) if isinstance(x, dict) else x for x in json.loads(text)]
    return items[0] if len(items) == 1 else items


class OutboxStore:
    """The outbox's side of a backend. ``lane_config(row)`` turns an enabled endpoint's row
    ``(id, version, url, secret, scheme, headers, timeout)`` into ``(Sender, timeout)`` for its attempts;
    ``open_lanes(ids)``, when given, hears which endpoints are enabled each time they are read."""

    part = "outbox"

    def __init__(self, backend: Backend, lane_config: Callable[[Row], Tuple[Any, float]],
                 disable_after: Optional[float] = None,
                 open_lanes: Optional[Callable[[Set[Any]], None]] = None) -> None:
        self.b = backend
        self.q = backend.queries[self.part]
        self.lane_config = lane_config
        self.open_lanes = open_lanes
        #: Seconds of nothing but failures after which an endpoint is disabled (None: never).
        self.disable_after = disable_after

    # -- the engine's queue -------------------------------------------------------------

    def connect(self) -> Any:
        return self.b.connect(durable=False)

    def disconnect(self, conn: Any) -> None:
        self.b.close(conn)

    def transaction(self, conn: Any) -> Any:
        return self.b.transaction(conn)

    def lanes(self, conn: Any) -> Dict[Any, Tuple[Any, float]]:
        lanes = {row[0]: self.lane_config(row) for row in self.b.fetchall(conn, self.q["lanes"])}
        if self.open_lanes is not None:
            self.open_lanes(set(lanes))
        return lanes

    def first_due(self, conn: Any, lanes: Sequence[Any]) -> Dict[Any, Optional[float]]:
        return {r[0]: r[1] for r in self.b.fetchall(conn, self.q["first_due"], {"ids": self.b.ids(lanes)})}

    def claim(self, conn: Any, token: str, lane: Any, limit: int, now: float, until: float) -> List[Job]:
        args = {"lane": lane, "now": now, "limit": limit, "token": token, "until": until}
        rows = self.b.fetchall(conn, self.q["claim"], args)
        if rows and "mark_claimed" in self.q:  # sqlite: no UPDATE ... RETURNING before 3.35
            self.b.execute(conn, self.q["mark_claimed"], dict(args, ids=self.b.ids(r[0] for r in rows)))
        rows.sort(key=lambda r: r[0])  # send order
        return [Job(i, lane, tries, (mid, event, bytes(body))) for i, mid, event, body, tries in rows]

    def settle(self, conn: Any, token: str, settled: List[Settled]) -> Set[Any]:
        """Log the attempts and move their deliveries on: delivered, rescheduled, or dead (410: with the
        endpoint's others); keep each endpoint's health, disabling one that failed for ``disable_after``.

        What died and what was disabled *by this call* is noted on the Settled (``report``), for the
        callbacks: a delivery or an endpoint another process got to first is not reported here."""
        b, q = self.b, self.q
        now = time.time()
        log_rows = []
        for s in settled:
            d = s.outcome.detail
            status = getattr(d, "status", None)
            body = getattr(d, "response_body", b"")
            log_rows.append((s.job.id, s.started, status, s.outcome.elapsed, body[:SNIPPET] if body else None,
                             s.outcome.error, token))
        b.insert_rows(conn, q["log_attempts"], log_rows)
        by_status: Dict[Optional[int], List[int]] = {}
        for s in settled:
            if s.outcome.ok:
                by_status.setdefault(getattr(s.outcome.detail, "status", None), []).append(s.job.id)
        for status, ids in by_status.items():
            b.execute(conn, q["delivered"], {"status": status, "now": now, "ids": b.ids(ids)})
        closed: Set[Any] = set()
        for s in settled:
            if s.outcome.ok:
                continue
            job = s.job
            status = getattr(s.outcome.detail, "status", None)
            b.execute(conn, q["failed"], {"status": status, "error": s.outcome.error, "now": now, "id": job.id})
            if s.outcome.close:
                reason = f"{s.outcome.close} at {_utc(now)}"
                if b.execute(conn, q["close_endpoint"], {"reason": reason, "id": job.lane}):
                    s.report.append((DISABLED, job.lane, reason))
                dead = [job.id] if b.execute(conn, q["bury_one"], {"now": now, "id": job.id}) else []
                dead += self._bury(conn, job.lane, now, f"not sent: the endpoint answered {s.outcome.close} "
                                   "and was disabled")
                if dead:
                    s.report.append((DIED, dead))
                if job.lane not in closed:
                    log.warning("outbox: endpoint %s answered %s: disabled; %d delivery(ies) dead",
                                job.lane, s.outcome.close, len(dead))
                closed.add(job.lane)
            elif s.verdict == DEAD:
                if b.execute(conn, q["give_up"], {"tries": s.tries, "id": job.id, "token": token}):
                    s.report.append((DIED, [job.id]))
                    log.warning("outbox: delivery %s (message %s) is dead after %d attempt(s): %s",
                                job.id, job.data[0], s.tries, s.outcome.error)
            elif s.verdict == RETRY:
                b.execute(conn, q["retry_later"], {"due": s.due, "tries": s.tries, "id": job.id, "token": token})
        self._health(conn, settled, now)
        return closed

    def _bury(self, conn: Any, eid: Any, now: float, error: str) -> List[int]:
        """Make an endpoint's pending deliveries dead; return their ids."""
        b, q = self.b, self.q
        args = {"now": now, "id": eid, "error": error}
        if "buried" in q:  # sqlite (no UPDATE ... RETURNING before 3.35): read them first, under the write lock
            ids = [r[0] for r in b.fetchall(conn, q["buried"], args)]
            b.execute(conn, q["bury_endpoint"], args)
            return ids
        return [r[0] for r in b.fetchall(conn, q["bury_endpoint"], args)]

    def _health(self, conn: Any, settled: List[Settled], now: float) -> None:
        """Each endpoint's last success and the start of its failing streak; disable one failing too long.

        "Failing since" is the start of the first failed attempt after the newest success: an endpoint
        is disabled once every attempt for ``disable_after`` seconds failed. Outcomes recorded out of
        order (several processes) can only make the streak shorter, never longer than it was.
        """
        b, q = self.b, self.q
        ok: Dict[Any, float] = {}
        failed: Dict[Any, List[Settled]] = {}
        for s in settled:
            if s.outcome.ok:
                ok[s.job.lane] = max(ok.get(s.job.lane, 0.0), s.started)
            elif not s.outcome.close:  # a 410 disabled it already
                failed.setdefault(s.job.lane, []).append(s)
        for lane, at in ok.items():
            # Every success is offered: the row changes only to end a failing streak (another process's
            # failure, too) or when its last_success is over a second old. (Skipping the statement here,
            # by what this process wrote last, missed streaks other processes began, and forgot that a
            # round's transaction can roll back: a recovered endpoint was then disabled.)
            b.execute(conn, q["health_ok"], {"id": lane, "at": at, "fresh": at - 1.0})
        for lane, fails in failed.items():
            later = [s for s in fails if s.started > ok.get(lane, float("-inf"))]
            if not later:
                continue
            b.execute(conn, q["health_failed"], {"id": lane, "at": min(s.started for s in later)})
            if self.disable_after is None:
                continue
            args = {"id": lane, "cutoff": now - self.disable_after}
            row = b.fetchone(conn, q["health_check"], args)
            if row is None:
                continue
            since = float(row[0])
            reason = (f"every attempt failed for {_span(now - since)} since {_utc(since)} "
                      f"(disable_after={self.disable_after:g} s)")
            if b.execute(conn, q["health_disable"], dict(args, reason=reason)):
                log.warning("outbox: endpoint %s disabled: %s", lane, reason)
                later[-1].report.append((DISABLED, lane, reason))

    def renew(self, conn: Any, token: str, ids: Sequence[int], until: float) -> Tuple[Set[int], int]:
        b, q = self.b, self.q
        found = {r[0]: (r[1], r[2]) for r in b.fetchall(conn, q["held"], {"ids": b.ids(ids)})}
        lost: Set[int] = set()
        taken = 0
        for i in ids:
            worker, state = found.get(i, (None, None))
            if worker != token or state != PENDING:
                lost.add(i)  # taken over, or settled elsewhere (delivered, dead, removed): not ours to send
                taken += worker is not None and worker != token
        b.execute(conn, q["renew"], {"until": until, "token": token, "ids": b.ids(ids)})
        return lost, taken

    def release(self, conn: Any, token: str, ids: Sequence[int], now: float) -> None:
        self.b.execute(conn, self.q["release"], {"now": now, "token": token, "ids": self.b.ids(ids)})

    def listen(self, wake: Callable[[], None], stop: Any) -> Any:
        return self.b.listen(self.part, wake, stop)

    def notify(self, conn: Any) -> None:
        """Wake idle workers of other processes at commit (PostgreSQL; sqlite's poll)."""
        self.b.notify(conn, self.part)

    # -- sending -------------------------------------------------------------------------

    def enqueue(self, conn: Any, items: Sequence[Tuple[str, bytes, str, Optional[str]]], tenant: str,
                first_delay: Callable[[], float]) -> int:
        """Store ``(event, body, message id, key)`` items with one delivery per matching endpoint of
        ``tenant`` (enabled or not: a paused endpoint's deliveries wait). Returns how many
        deliveries were created; a message id already there is skipped (sent once)."""
        b, q = self.b, self.q
        endpoints = [(eid, json.loads(events)) for eid, events in b.fetchall(conn, q["fanout"], {"tenant": tenant})]
        now = time.time()
        targets: List[Tuple[Tuple[str, bytes, str, Optional[str]], List[Any]]] = []
        for item in items:
            found = [eid for eid, patterns in endpoints if matches(patterns, item[0])]
            if not found:
                who = f"of tenant {tenant!r} " if tenant else ""
                log.warning("outbox: no endpoint %stakes %r; message %s not stored", who, item[0], item[2])
                continue
            targets.append((item, found))
        if not targets:
            return 0
        new = b.insert_new(conn, q["insert_message"],
                           [(item[2], item[0], item[1], tenant, now) for item, _ in targets])
        rows = []
        for (event, body, msg_id, key), found in targets:
            if msg_id in new:
                rows += [(msg_id, eid, PENDING, now + first_delay(), key, now, now) for eid in found]
        b.insert_rows(conn, q["insert_deliveries"], rows)
        return len(rows)

    # -- endpoints -------------------------------------------------------------------------

    def endpoint_config(self, conn: Any, eid: int) -> Optional[Row]:
        """``(id, tenant, url, secret, scheme, events, headers, timeout, enabled)`` of one endpoint."""
        return self.b.fetchone(conn, self.q["endpoint_config"], {"id": eid})

    def find_endpoint(self, conn: Any, tenant: str, url: str) -> Optional[Row]:
        return self.b.fetchone(conn, self.q["endpoint_find"], {"tenant": tenant, "url": url})

    def insert_endpoint(self, conn: Any, tenant: str, url: str, config: Dict[str, Any]) -> None:
        self.b.execute(conn, self.q["endpoint_insert"], dict(config, tenant=tenant, url=url, now=time.time()))

    def update_endpoint(self, conn: Any, eid: int, config: Dict[str, Any]) -> None:
        self.b.execute(conn, self.q["endpoint_update"], dict(config, id=eid))

    def endpoint_id(self, conn: Any, endpoint: Any) -> int:
        """An endpoint's id from its id or its URL (KeyError when there is none; ValueError when tenants share the URL)."""
        if isinstance(endpoint, str):
            rows = self.b.fetchall(conn, self.q["endpoints_by_url"], {"url": endpoint})
            if len(rows) > 1:
                tenants = ", ".join(repr(t or None) for _, t in rows)
                raise ValueError(f"several endpoints have the URL {endpoint!r} (tenants {tenants}): give the id")
            row = rows[0] if rows else None
        else:
            row = self.b.fetchone(conn, self.q["endpoint_config"], {"id": int(endpoint)})
        if row is None:
            raise KeyError(f"no endpoint {endpoint!r} in this outbox")
        return int(row[0])

    def set_enabled(self, conn: Any, eid: int, enabled: bool, reason: Optional[str] = None) -> None:
        if enabled:
            self.b.execute(conn, self.q["endpoint_enable"], {"id": eid})
        else:
            self.b.execute(conn, self.q["endpoint_disable"], {"id": eid, "reason": reason})

    def endpoints(self, conn: Any) -> List[Row]:
        return self.b.fetchall(conn, self.q["endpoints"])

    def remove_endpoint(self, conn: Any, eid: int) -> None:
        for name in ("remove_attempts", "remove_deliveries", "remove_endpoint"):
            self.b.execute(conn, self.q[name], {"id": eid})
        self.b.execute(conn, self.q["orphan_messages"])

    # -- inspecting and retrying -------------------------------------------------------------

    def deliveries(self, conn: Any, state: Optional[str], endpoint: Optional[int], message_id: Optional[str],
                   limit: int, before: Optional[int] = None, ids: Optional[Sequence[int]] = None) -> List[Row]:
        where = []
        if state is not None:
            where.append(self.q[f"where_{state}"])
        if endpoint is not None:
            where.append(self.q["where_endpoint"])
        if message_id is not None:
            where.append(self.q["where_message"])
        if before is not None:
            where.append(self.q["where_before"])
        if ids is not None:
            where.append(self.q["where_ids"])
        sql = self.q["deliveries"] + (" WHERE " + " AND ".join(where) if where else "") + " " + self.q["newest_first"]
        return self.b.fetchall(conn, sql, {"endpoint": endpoint, "message": message_id, "limit": int(limit),
                                           "before": before, "ids": self.b.ids(ids or ())})

    def delivery(self, conn: Any, delivery_id: int) -> Optional[Row]:
        return self.b.fetchone(conn, self.q["delivery"], {"id": delivery_id})

    def attempts(self, conn: Any, delivery_id: int) -> List[Row]:
        return self.b.fetchall(conn, self.q["attempts"], {"id": delivery_id})

    def retry(self, conn: Any, delivery_id: int) -> bool:
        """Make a dead or delivered delivery pending again, due now (a fresh schedule); a pending one
        waiting for its next attempt is made due now. False if nothing changed (it is being sent)."""
        row = self.b.fetchone(conn, self.q["retry_check"], {"id": delivery_id})
        if row is None:
            raise KeyError(f"no delivery {delivery_id!r} in this outbox")
        state, enabled, url = row
        if state == PENDING:
            return bool(self.b.execute(conn, self.q["retry_waiting"], {"now": time.time(), "id": delivery_id}))
        if not enabled:
            raise ValueError(f"the endpoint {url!r} is disabled; enable_endpoint() it before retrying")
        self.b.execute(conn, self.q["retry"], {"now": time.time(), "id": delivery_id})
        return True

    def stats(self, conn: Any, window: float = 3600.0) -> Dict[int, Dict[str, Any]]:
        eps = self.b.fetchall(conn, self.q["stats_endpoints"])
        counts = self.b.fetchall(conn, self.q["stats_counts"])
        recent = self.b.fetchall(conn, self.q["stats_recent"], {"since": time.time() - window, "cap": STATS_CAP})
        out: Dict[int, Dict[str, Any]] = {}
        for eid, url, enabled, tenant, reason, last_success, failing_since in eps:
            out[eid] = {"url": url, "enabled": bool(enabled), PENDING: 0, DELIVERED: 0, DEAD_STATE: 0,
                        "disabled_reason": reason, "last_success": last_success, "failing_since": failing_since,
                        "last_hour": {"attempts": 0, "succeeded": 0, "success_rate": None, "p50": None, "p99": None}}
            if tenant:
                out[eid]["tenant"] = tenant
        for eid, state, n in counts:
            if eid in out:
                out[eid][state] = int(n)
        for eid, n, succeeded, p50, p99 in recent:
            if eid in out:
                n, succeeded = int(n), int(succeeded or 0)
                out[eid]["last_hour"] = {"attempts": n, "succeeded": succeeded, "success_rate": succeeded / n,
                                         "p50": p50, "p99": p99}
        return out

    def gauges(self, conn: Any) -> Tuple[Dict[int, bool], List[Row]]:
        """Every endpoint (id -> enabled), and (endpoint id, "pending" or "dead", count) rows."""
        enabled = {int(r[0]): bool(r[2]) for r in self.b.fetchall(conn, self.q["stats_endpoints"])}
        return enabled, self.b.fetchall(conn, self.q["gauges"])

    def recover(self, conn: Any, since: float, endpoint: Optional[int]) -> Tuple[int, Dict[int, int]]:
        """Make dead deliveries last changed since ``since`` pending, due now, on a fresh schedule.

        Returns how many, and (endpoint id -> count) of those left dead because their endpoint is
        disabled. With ``endpoint``, a disabled one is a ValueError and nothing changes."""
        args: Dict[str, Any] = {"since": since, "now": time.time()}
        if endpoint is not None:
            row = self.endpoint_config(conn, endpoint)
            assert row is not None
            if not row[8]:
                raise ValueError(f"the endpoint {row[2]!r} is disabled; enable_endpoint() it before recovering")
            return self.b.execute(conn, self.q["recover_one"], dict(args, endpoint=endpoint)), {}
        skipped = {int(eid): int(n) for eid, n in self.b.fetchall(conn, self.q["recover_skipped"], {"since": since})}
        return self.b.execute(conn, self.q["recover"], args), skipped

    def pending(self, conn: Any) -> int:
        return int(self.b.fetchall(conn, self.q["pending"])[0][0])

    def any_pending(self, conn: Any, due_only: bool = False) -> bool:
        if due_only:
            return bool(self.b.fetchall(conn, self.q["any_due"], {"now": time.time()}))
        return bool(self.b.fetchall(conn, self.q["any_pending"]))

    def purge(self, conn: Any, cutoff: float) -> int:
        self.b.execute(conn, self.q["purge_attempts"], {"cutoff": cutoff})
        n = self.b.execute(conn, self.q["purge_deliveries"], {"cutoff": cutoff})
        self.b.execute(conn, self.q["orphan_messages"])
        self.b.execute(conn, self.q["orphan_attempts"])
        return n
