"""Running an outbox in production (issue 14): endpoint health and disable_after, the on_disabled
and on_dead callbacks, recover(), stats() per endpoint, metrics(), and the schema migration that
brings the health columns. Every test that takes ``db`` runs on sqlite and on PostgreSQL, against
real loopback servers; one runs two processes on one database."""
import datetime
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import webhooklite
from conftest import LoopbackServer, wait_for
from test_metrics import parse

ROOT = Path(__file__).resolve().parent.parent
#: Many quick retries: a delivery stays pending (failing) for about two seconds.
PATIENT = (0,) + (0.05,) * 40


class Server(LoopbackServer):
    """Answers by path: ``answers[path]`` is a status (default 200); records every request."""

    def __init__(self, **answers):
        self.answers = {"/" + k: v for k, v in answers.items()}
        super().__init__()

    def respond(self, conn, method, path, headers, body):
        status = self.answers.get(path, 200)
        if isinstance(status, tuple):  # (status, seconds to wait first)
            status, delay = status
            time.sleep(delay)
        return self.answer(conn, status, b'{"answer":"from the test server"}')

    def ids(self, path):
        with self._lock:
            return [h.get("webhook-id") for _, p, h, _ in self.requests if p == path]


@pytest.fixture
def server():
    s = Server(down=500, gone=410)
    yield s
    s.close()


class Calls:
    """Records callback calls with the thread they came from."""

    def __init__(self, fail=False, delay=0.0):
        self.calls, self.threads = [], set()
        self.fail, self.delay = fail, delay
        self.lock = threading.Lock()

    def __call__(self, *args):
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.calls.append(args)
            self.threads.add(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("the callback failed")


def test_an_endpoint_failing_for_disable_after_is_disabled_once_and_its_deliveries_wait(server, db):
    disabled, dead = Calls(), Calls()
    outbox = webhooklite.Outbox(db.target, schedule=PATIENT, disable_after=0.3, on_disabled=disabled, on_dead=dead)
    try:
        down = outbox.add_endpoint(server.base + "/down")
        ok = outbox.add_endpoint(server.base + "/ok")
        ids = [outbox.send("order.created", {"n": i}) for i in range(3)]
        start = time.time()
        outbox.start()
        assert wait_for(lambda: len(disabled.calls) == 1, 10)
        (endpoint, reason), = disabled.calls
        assert isinstance(endpoint, webhooklite.outbox.Endpoint) and endpoint.id == down and not endpoint.enabled
        assert "every attempt failed for" in reason and "disable_after=0.3 s" in reason, reason
        assert endpoint.disabled_reason == reason
        assert time.time() - start >= 0.3  # not before disable_after of failures
        assert outbox.drain(timeout=10)  # the healthy endpoint got everything; the paused one's wait
        sent = len(server.ids("/down"))
        time.sleep(0.15)
        assert len(server.ids("/down")) == sent  # nothing more goes to it
        assert sorted(server.ids("/ok")) == sorted(ids)
        assert [d.message_id for d in outbox.deliveries("pending", endpoint=down)][::-1] == ids  # waiting, not dead
        stats = outbox.stats()
        assert (stats[down]["enabled"], stats[down]["disabled_reason"], stats[down]["pending"]) == (False, reason, 3)
        assert stats[down]["last_success"] is None and start - 1 <= stats[down]["failing_since"] <= start + 1
        assert stats[ok]["failing_since"] is None and stats[ok]["last_success"] >= start - 1
        assert disabled.threads == {"webhooklite-outbox-callbacks"} and dead.calls == []
        # Back up and enabled by hand: what waited goes out, and its health starts afresh.
        server.answers["/down"] = 200
        outbox.enable_endpoint(down)
        assert outbox.drain(timeout=10)
        assert set(server.ids("/down")) == set(ids)
        stats = outbox.stats()[down]
        assert (stats["enabled"], stats["disabled_reason"], stats["failing_since"]) == (True, None, None)
        assert stats["last_success"] is not None and stats["delivered"] == 3
        assert len(disabled.calls) == 1
    finally:
        outbox.close()


def test_a_success_between_failures_restarts_the_clock(db, server):
    answers = iter([500, 500, 200] + [500] * 100)
    server.respond = lambda conn, method, path, headers, body: server.answer(conn, next(answers))
    disabled = Calls()
    outbox = webhooklite.Outbox(db.target, schedule=(0, 0.05, 0.05), jitter=0, disable_after=0.6,
                                on_disabled=disabled, workers=1)
    try:
        eid = outbox.add_endpoint(server.base + "/flaky")
        outbox.send("a", {})  # 500, 500, 200 over 0.1 s: healthy
        assert outbox.drain(timeout=10)
        first = outbox.stats()[eid]
        assert first["failing_since"] is None and first["last_success"] is not None and first["enabled"]
        # 500 x3 over 0.1 s: dead, but not failing for 0.6 s yet (a loaded CI box has 0.5 s to spare)
        outbox.send("b", {})
        assert outbox.drain(timeout=10)
        assert outbox.endpoints()[0].enabled and disabled.calls == []
        assert outbox.endpoints()[0].failing_since > first["last_success"]
        time.sleep(0.6)
        outbox.send("c", {})  # its first failure is past 0.6 s of failing: disabled
        outbox.drain(timeout=10)
        assert wait_for(lambda: len(disabled.calls) == 1)
        assert not outbox.endpoints()[0].enabled
    finally:
        outbox.close()


def test_on_dead_once_per_dead_delivery_and_a_failing_or_slow_callback_loses_nothing(server, db, caplog):
    dead = Calls(fail=True, delay=0.25)  # slow, and raises every time
    outbox = webhooklite.Outbox(db.target, schedule=(0, 0.02), disable_after=None, on_dead=dead)
    try:
        down = outbox.add_endpoint(server.base + "/down", events=["dies"])
        ok = outbox.add_endpoint(server.base + "/ok", events=["lives"])
        doomed = [outbox.send("dies", {"n": i}) for i in range(4)]
        outbox.start()
        assert wait_for(lambda: len(server.ids("/down")) == 8, 10)  # two attempts each
        start = time.monotonic()
        fine = [outbox.send("lives", {"n": i}) for i in range(20)]
        assert wait_for(lambda: len(server.ids("/ok")) == 20, 10)
        assert time.monotonic() - start < 0.8  # the callbacks (1 s in all) hold nothing up
        assert outbox.drain(timeout=10)
        assert wait_for(lambda: len(dead.calls) == 4, 10)  # each called once, though each raised
        records = [args[0] for args in dead.calls]
        assert sorted(r.message_id for r in records) == sorted(doomed)
        assert all(r.state == "dead" and r.endpoint_id == down and r.last_status == 500 and r.attempts == 2
                   for r in records)
        assert outbox.stats()[down]["dead"] == 4 and outbox.stats()[ok]["delivered"] == 20
        # Each logged once its callback has raised, just after it was counted above.
        assert wait_for(lambda: caplog.text.count("on_dead raised") == 4, 10)
        assert "RuntimeError: the callback failed" in caplog.text
        assert sorted(server.ids("/ok")) == sorted(fine)
    finally:
        outbox.close()
    assert len(dead.calls) == 4  # close() neither lost nor repeated one


def test_410_calls_on_disabled_once_and_on_dead_for_every_delivery_it_buried(server, db):
    disabled, dead = Calls(), Calls()
    outbox = webhooklite.Outbox(db.target, schedule=PATIENT, per_endpoint=1, on_disabled=disabled, on_dead=dead)
    try:
        gone = outbox.add_endpoint(server.base + "/gone")
        ids = [outbox.send("user.created", {"n": i}) for i in range(5)]
        assert outbox.drain(timeout=10)
        outbox.close()  # runs the queued callbacks first
        assert [(e.id, r.split(" at ")[0]) for e, r in disabled.calls] == [(gone, "410 Gone")]
        assert sorted(d.message_id for (d,) in dead.calls) == sorted(ids)
    finally:
        outbox.close()


TWO_PROCESSES = """
import sys, time, webhooklite
outbox = webhooklite.Outbox(sys.argv[1], schedule=(0,) + (0.05,) * 200, disable_after=0.4, workers=2,
                            on_disabled=lambda endpoint, reason: print("on_disabled", endpoint.id, flush=True))
print("ready", flush=True)
sys.stdin.readline()
outbox.start()
deadline = time.monotonic() + 15
while time.monotonic() < deadline and outbox.endpoints()[0].enabled:
    time.sleep(0.02)
time.sleep(0.3)  # attempts still in flight fail too, and are recorded
outbox.close()
"""


def test_two_processes_on_one_database_record_the_disable_once_and_call_back_once(server, db):
    server.answers["/slow-down"] = (500, 0.02)  # slow: neither process can take all the work
    with webhooklite.Outbox(db.target) as outbox:
        eid = outbox.add_endpoint(server.base + "/slow-down")
        outbox.send_many([("order.created", {"n": i}) for i in range(40)])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", TWO_PROCESSES, db.target], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [p.communicate(timeout=30) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), outs
    said = [line for out, _ in outs for line in out.splitlines() if line.startswith("on_disabled")]
    assert said == [f"on_disabled {eid}"], outs  # once, by the process whose UPDATE disabled it
    assert sum(err.count("disabled: every attempt failed") for _, err in outs) == 1, outs
    # Both processes were sending to it (so both could have disabled it).
    workers = {w.split(":")[1] for (w,) in db.rows("SELECT DISTINCT worker FROM webhooklite_attempts")}
    assert len(workers) == 2, workers
    ((enabled, reason),) = db.rows("SELECT enabled, disabled_reason FROM webhooklite_endpoints")
    assert not enabled and "every attempt failed" in reason
    assert db.rows("SELECT count(*) FROM webhooklite_deliveries WHERE state = 'pending'") == [(40,)]


def test_recover_sends_every_delivery_dead_since_a_time_again_with_the_same_ids(server, db, caplog):
    outbox = webhooklite.Outbox(db.target, schedule=(0,), disable_after=None)
    try:
        a = outbox.add_endpoint(server.base + "/down", events=["a"])
        b = outbox.add_endpoint(server.base + "/b-down", events=["b"])
        server.answers["/b-down"] = 500
        early = outbox.send("a", {"n": 0})
        assert outbox.drain(timeout=10)
        time.sleep(0.05)
        since = time.time()
        later = [outbox.send("a", {"n": i}) for i in (1, 2)] + [outbox.send("b", {"n": 3})]
        assert outbox.drain(timeout=10) and len(outbox.dead()) == 4
        assert outbox.recover(time.time() + 60) == 0  # nothing died in the future
        server.answers["/down"] = server.answers["/b-down"] = 200
        outbox.disable_endpoint(b, reason="maintenance")
        with pytest.raises(ValueError, match="disabled"):
            outbox.recover(since, endpoint=b)
        with caplog.at_level(logging.WARNING, logger="webhooklite"):
            assert outbox.recover(datetime.datetime.fromtimestamp(since, datetime.timezone.utc)) == 2
        assert "left 1 dead delivery(ies) of disabled endpoint" in caplog.text
        assert outbox.drain(timeout=10)
        sent = server.ids("/down")
        assert [sent.count(i) for i in [early] + later[:2]] == [1, 2, 2]  # the same ids again; not the early one
        assert [d.message_id for d in outbox.dead()] == [later[2], early]
        outbox.enable_endpoint(b)
        assert outbox.recover(since, endpoint=server.base + "/b-down") == 1  # by URL too
        assert outbox.recover(0) == 1  # the early one: "since" is a time, 0 is the epoch
        assert outbox.drain(timeout=10) and outbox.dead() == []
        assert server.ids("/b-down")[-1] == later[2] and server.ids("/down").count(early) == 2
        with pytest.raises(ValueError, match="aware"):
            outbox.recover(datetime.datetime.now())
        with pytest.raises(KeyError):
            outbox.recover(0, endpoint=99)
    finally:
        outbox.close()


def _insert_attempts(db, eid, durations, statuses, at):
    """Log attempts by hand: one delivery of endpoint ``eid`` with these durations and statuses."""
    conn = db.connect()
    mark = "%s" if db.kind == "postgres" else "?"
    try:
        cur = conn.cursor()
        cur.execute(f"INSERT INTO webhooklite_messages (id, event, body, tenant, created) VALUES "
                    f"({mark}, 'x', {mark}, '', 0)", (f"msg_{eid}_{at}", b"{}"))
        cur.execute(f"INSERT INTO webhooklite_deliveries (message_id, endpoint_id, state, created, updated) VALUES "
                    f"({mark}, {mark}, 'dead', 0, 0)", (f"msg_{eid}_{at}", eid))
        cur.execute("SELECT max(id) FROM webhooklite_deliveries")
        (delivery,) = cur.fetchone()
        for duration, status in zip(durations, statuses):
            cur.execute(f"INSERT INTO webhooklite_attempts (delivery_id, at, status, duration) VALUES "
                        f"({mark}, {mark}, {mark}, {mark})", (delivery, at, status, duration))
        conn.commit()
    finally:
        conn.close()


def test_stats_success_rate_and_percentiles_over_the_last_hour(server, db):
    with webhooklite.Outbox(db.target, schedule=(0,)) as outbox:
        busy = outbox.add_endpoint(server.base + "/busy", events=["nothing"])
        quiet = outbox.add_endpoint(server.base + "/quiet", events=["nothing"])
        live = outbox.add_endpoint(server.base + "/live", events=["live"])
        now = time.time()
        # 100 attempts this hour: 0.01 s ... 1.00 s, every fourth one a 500; and slow ones two hours ago.
        _insert_attempts(db, busy, [n / 100 for n in range(100, 0, -1)],
                         [500 if n % 4 == 0 else 200 for n in range(100)], now - 60)
        _insert_attempts(db, busy, [30.0] * 50, [200] * 50, now - 7200)
        _insert_attempts(db, quiet, [0.2], [None], now - 10)
        outbox.send_many([("live", {"n": i}) for i in range(5)])
        assert outbox.drain(timeout=10)
        stats = outbox.stats()
    hour = stats[busy]["last_hour"]
    assert hour == {"attempts": 100, "succeeded": 75, "success_rate": 0.75, "p50": 0.5, "p99": 0.99}
    assert stats[quiet]["last_hour"] == {"attempts": 1, "succeeded": 0, "success_rate": 0.0, "p50": 0.2, "p99": 0.2}
    live_hour = stats[live]["last_hour"]
    assert (live_hour["attempts"], live_hour["success_rate"]) == (5, 1.0)
    assert 0 < live_hour["p50"] <= live_hour["p99"] < 5
    # The keys callers had before issue 14 are all still there.
    assert {"url", "enabled", "pending", "delivered", "dead"} <= set(stats[live])
    assert stats[live]["delivered"] == 5


def test_metrics_count_this_process_and_read_the_gauges_from_the_database(server, db):
    outbox = webhooklite.Outbox(db.target, schedule=(0, 0.02), disable_after=None)
    try:
        ok = outbox.add_endpoint(server.base + "/ok", events=["ok"])
        down = outbox.add_endpoint(server.base + "/down", events=["down"])
        outbox.add_endpoint(server.base + "/paused", events=["paused"])
        outbox.disable_endpoint(3)
        outbox.send_many([("ok", {})] * 3 + [("down", {})] * 2 + [("paused", {})])
        assert outbox.drain(timeout=10)
        text = outbox.metrics()
    finally:
        outbox.close()
    m = parse(text)
    assert m[f'webhooklite_outbox_attempts_total{{endpoint="{ok}",outcome="delivered"}}'] == 3
    assert m[f'webhooklite_outbox_attempts_total{{endpoint="{down}",outcome="failed"}}'] == 2
    assert m[f'webhooklite_outbox_attempts_total{{endpoint="{down}",outcome="dead"}}'] == 2
    assert m[f'webhooklite_outbox_attempt_duration_seconds_count{{endpoint="{ok}"}}'] == 3
    assert m[f'webhooklite_outbox_attempt_duration_seconds_bucket{{endpoint="{down}",le="+Inf"}}'] == 4
    assert m[f'webhooklite_outbox_deliveries{{endpoint="{down}",state="dead"}}'] == 2
    assert m[f'webhooklite_outbox_deliveries{{endpoint="{ok}",state="pending"}}'] == 0
    assert m['webhooklite_outbox_deliveries{endpoint="3",state="pending"}'] == 1
    assert m["webhooklite_outbox_endpoints_disabled"] == 1
    assert "# TYPE webhooklite_outbox_attempt_duration_seconds histogram" in text
    assert "127.0.0.1" not in text  # endpoints are labelled by id: a URL may hold a token
    # Another process's view: the gauges (from the database), none of this one's counts.
    with webhooklite.Outbox(db.target) as other:
        m = parse(other.metrics())
    assert m[f'webhooklite_outbox_deliveries{{endpoint="{down}",state="dead"}}'] == 2
    assert not any(k.startswith("webhooklite_outbox_attempts_total") for k in m)


def test_a_version_2_database_is_migrated_in_place_and_keeps_its_messages(server, db):
    if db.kind == "sqlite":
        from webhooklite.backends.sqlite import OUTBOX_SCHEMA as V2, SCHEMA_TABLE
    else:
        from webhooklite.backends.postgres import OUTBOX_SCHEMA as V2, SCHEMA_TABLE
    conn = db.connect()
    mark = "%s" if db.kind == "postgres" else "?"
    cur = conn.cursor()
    for statement in V2.split(";\n"):
        if statement.strip():
            cur.execute(statement)
    cur.execute(SCHEMA_TABLE)
    cur.execute("INSERT INTO webhooklite_schema (part, version) VALUES ('outbox', 2)")
    cur.execute("INSERT INTO webhooklite_endpoints (url, scheme, events, headers, timeout, created) VALUES "
                f"({mark}, 'standard', '[\"*\"]', '{{}}', 5, 0)", (server.base + "/ok",))
    cur.execute("INSERT INTO webhooklite_messages (id, event, body, created) VALUES ('msg_v2', 'x', "
                f"{mark}, 0)", (b'{"event":"x"}',))
    cur.execute("INSERT INTO webhooklite_deliveries (message_id, endpoint_id, state, next_at, created, updated) "
                "VALUES ('msg_v2', 1, 'pending', 0, 0, 0)")
    conn.commit()
    conn.close()
    with webhooklite.Outbox(db.target) as outbox:
        assert db.rows("SELECT version FROM webhooklite_schema WHERE part = 'outbox'") == [(4 if db.kind == "sqlite" else 3,)]  # PostgreSQL's ids were never reused
        assert outbox.endpoints()[0].last_success is None
        assert outbox.drain(timeout=10)
        assert server.ids("/ok") == ["msg_v2"] and outbox.stats()[1]["last_success"] is not None


def test_what_a_status_page_reads_pages_of_one_endpoints_deliveries_and_their_attempts(server, db):
    with webhooklite.Outbox(db.target, schedule=(0,)) as outbox:
        ok = outbox.add_endpoint(server.base + "/ok")
        ids = outbox.send_many([("x", {"n": i}) for i in range(5)])
        assert outbox.drain(timeout=10)
        first = outbox.deliveries(endpoint=ok, limit=2)
        second = outbox.deliveries(endpoint=ok, limit=2, before=first[-1].id)
        rest = outbox.deliveries(endpoint=ok, limit=2, before=second[-1].id)
        assert [d.message_id for d in first + second + rest] == ids[::-1]
        assert outbox.deliveries(endpoint=ok, before=rest[-1].id) == []
        (attempt,) = outbox.attempts(first[0].id)
        assert attempt.status == 200 and attempt.response == b'{"answer":"from the test server"}'
        endpoint = outbox.endpoints()[0]
        assert endpoint.failing_since is None and time.time() - 60 < endpoint.last_success <= time.time()


def test_a_new_endpoint_never_gets_a_removed_ones_id_nor_its_url_and_secret(server, db):
    a_secret, b_secret = "whsec_" + "A" * 40, "whsec_" + "B" * 40
    with webhooklite.Outbox(db.target, schedule=(0,)) as outbox:
        a = outbox.add_endpoint(server.base + "/customer-a", secret=a_secret)
        outbox.send("invoice.paid", {"customer": "A"}, id="msg_for_a")
        assert outbox.drain(timeout=10)  # a worker has built (and keeps) customer A's Sender
        outbox.remove_endpoint(a)  # customer A leaves: the newest endpoint, on sqlite its id was free again
        b = outbox.add_endpoint(server.base + "/customer-b", secret=b_secret)
        assert b != a
        outbox.send("invoice.paid", {"customer": "B"}, id="msg_for_b")
        assert outbox.drain(timeout=10)
    assert server.ids("/customer-a") == ["msg_for_a"]  # not B's payload, at A's URL
    assert server.ids("/customer-b") == ["msg_for_b"]
    (_, _, headers, body), = [r for r in server.requests if r[1] == "/customer-b"]
    webhooklite.verify(body, headers, b_secret)  # signed with B's secret, not A's


def test_a_version_3_sqlite_file_gets_ids_that_are_never_used_again(server, tmp_path):
    from webhooklite.backends.sqlite import OUTBOX_2_TO_3, OUTBOX_SCHEMA, SCHEMA_TABLE

    path = tmp_path / "v3.db"
    conn = sqlite3.connect(path)
    conn.executescript(OUTBOX_SCHEMA + OUTBOX_2_TO_3 + SCHEMA_TABLE + ";")
    conn.execute("INSERT INTO webhooklite_schema (part, version) VALUES ('outbox', 3)")
    conn.execute("INSERT INTO webhooklite_endpoints (url, scheme, events, headers, timeout, created) VALUES "
                 "(?, 'standard', '[\"*\"]', '{}', 5, 0)", (server.base + "/ok",))
    conn.execute("INSERT INTO webhooklite_messages (id, event, body, created) VALUES ('msg_v3', 'x', ?, 0)",
                 (b'{"event":"x"}',))
    conn.execute("INSERT INTO webhooklite_deliveries (message_id, endpoint_id, state, next_at, created, updated) "
                 "VALUES ('msg_v3', 1, 'pending', 0, 0, 0)")
    # The application's own, in the database it shares with the outbox: a view over the outbox's tables,
    # a trigger and an index on them.
    conn.executescript("""
        CREATE VIEW app_pending AS SELECT e.url, d.message_id FROM webhooklite_deliveries d
            JOIN webhooklite_endpoints e ON e.id = d.endpoint_id;
        CREATE TABLE app_audit (delivery_id INTEGER);
        CREATE TRIGGER app_audit_new AFTER INSERT ON webhooklite_deliveries
            BEGIN INSERT INTO app_audit VALUES (new.id); END;
        CREATE INDEX app_by_created ON webhooklite_deliveries (created);
    """)
    conn.commit()
    conn.close()
    with webhooklite.Outbox(str(path), schedule=(0,)) as outbox:
        assert outbox.drain(timeout=10)  # its pending delivery went out after the migration
        assert server.ids("/ok") == ["msg_v3"]
        outbox.remove_endpoint(1)
        again = outbox.add_endpoint(server.base + "/again")
        assert again == 2  # not 1 again
        outbox.send("x", {}, id="msg_after")
        assert [d.id for d in outbox.deliveries(endpoint=again)] == [2]  # not 1, removed with its endpoint
    check = sqlite3.connect(path)
    assert check.execute("SELECT version FROM webhooklite_schema WHERE part = 'outbox'").fetchall() == [(4,)]
    indexes = {r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"webhooklite_deliveries_due", "webhooklite_deliveries_keyed", "webhooklite_deliveries_dead",
            "webhooklite_deliveries_message", "app_by_created"} <= indexes
    assert check.execute("SELECT delivery_id FROM app_audit").fetchall() == [(2,)]  # its trigger fired on the send
    assert check.execute("SELECT message_id FROM app_pending").fetchall() == [("msg_after",)]  # its view reads on
    check.close()


def test_a_new_outbox_opens_in_an_application_database_that_has_a_stale_view(server, tmp_path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE legacy (x); CREATE VIEW legacy_report AS SELECT x FROM legacy; DROP TABLE legacy;")
    conn.close()
    with webhooklite.Outbox(str(path), schedule=(0,)) as outbox:  # a view that no longer resolves is not ours
        outbox.add_endpoint(server.base + "/ok")
        outbox.send("x", {}, id="msg_app_db")
        assert outbox.drain(timeout=10)
    assert server.ids("/ok") == ["msg_app_db"]


def test_start_called_while_another_threads_drain_runs_keeps_delivering_after_that_drain(db):
    slow = Server(hook=(200, 0.3))
    try:
        with webhooklite.Outbox(db.target, schedule=(0,)) as outbox:
            outbox.add_endpoint(slow.base + "/hook")
            outbox.send("a", {}, id="msg_a")
            drainer = threading.Thread(target=outbox.drain, kwargs={"timeout": 5})  # e.g. a start-up helper
            drainer.start()
            time.sleep(0.1)
            outbox.start()  # the app: deliver in the background from now on
            drainer.join(10)
            assert outbox.running  # that drain's end did not stop what start() asked for
            outbox.send("b", {}, id="msg_b")
            assert wait_for(lambda: slow.ids("/hook") == ["msg_a", "msg_b"], 5)
            outbox.stop()
            assert not outbox.running
    finally:
        slow.close()


def test_update_endpoint_reaches_the_deliveries_already_claimed(db):
    old_secret, new_secret = "whsec_" + "A" * 40, "whsec_" + "B" * 40
    moved = Server(old=(200, 1.0))  # the old URL answers after a second: the rest wait as claims
    try:
        with webhooklite.Outbox(db.target, schedule=(0, 1), workers=1, timeout=5, lease=20) as outbox:
            eid = outbox.add_endpoint(moved.base + "/old", secret=old_secret)
            ids = [outbox.send("order.created", {"n": i}, id=f"msg_move{i}") for i in range(4)]
            outbox.start()
            assert wait_for(lambda: len(moved.ids("/old")) == 1, 5)  # the first is in flight
            outbox.update_endpoint(eid, url=moved.base + "/new", secret=new_secret)
            assert outbox.drain(timeout=10)
        assert moved.ids("/old") == ids[:1]  # only the one already on its way
        assert moved.ids("/new") == ids[1:]
        for _, path, headers, body in moved.requests:
            if path == "/new":
                webhooklite.verify(body, headers, new_secret)  # and signed with the new secret
    finally:
        moved.close()


class ByBody(LoopbackServer):
    """200 for a body whose "ok" is true, else 500."""

    def respond(self, conn, method, path, headers, body):
        return self.answer(conn, 200 if json.loads(body)["ok"] else 500, b"{}")


def test_a_success_soon_after_another_still_ends_a_failing_streak_another_process_began(db):
    sink = ByBody()
    options = dict(schedule=(0, 3600), disable_after=2.0)
    a, b = webhooklite.Outbox(db.target, **options), webhooklite.Outbox(db.target, **options)  # two processes
    try:
        a.add_endpoint(sink.base + "/hook")

        def deliver(outbox, ok):
            n = len(sink.requests)
            outbox.send("e", {"ok": ok})
            outbox.start()
            assert wait_for(lambda: len(sink.requests) > n and not outbox._engine.busy(), 5)
            outbox.stop()

        deliver(a, True)
        deliver(b, False)  # the other process: a failing streak starts
        deliver(a, True)  # a success after it, within a second of a's last one: the streak is over
        assert a.endpoints()[0].failing_since is None
        time.sleep(2.2)
        deliver(b, False)  # one failure, over disable_after after a success: not a reason to disable
        assert a.endpoints()[0].enabled
    finally:
        a.close()
        b.close()
        sink.close()


def open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc (Linux)")
def test_removed_and_disabled_endpoints_do_not_keep_their_connections_open(server, db):
    with webhooklite.Outbox(db.target, schedule=(0,), poll=0.1) as outbox:
        outbox.start()
        ids = [outbox.add_endpoint(f"{server.base}/ok{i}") for i in range(10)]
        outbox.send("x", {})
        assert wait_for(lambda: len(server.requests) == 10 and not outbox.pending(), 10)  # each keeps one open
        with_them = open_fds()
        for eid in ids[:5]:
            outbox.remove_endpoint(eid)
        for eid in ids[5:]:
            outbox.disable_endpoint(eid)
        # Each connection closed: its socket here and, seeing the end, the test server's side of it (which
        # would itself close an idle one only after 5 s).
        assert wait_for(lambda: open_fds() <= with_them - 20, 3), (with_them, open_fds())


def test_stop_waits_for_the_attempt_a_timed_out_drain_is_still_finishing(db):
    slow = Server(hook=(200, 1.5))
    try:
        with webhooklite.Outbox(db.target, poll=0.05) as outbox:
            outbox.add_endpoint(slow.base + "/hook")
            outbox.send("x", {}, id="msg_in_flight")
            drainer = threading.Thread(target=outbox.drain, kwargs={"timeout": 0.3})
            drainer.start()
            assert wait_for(lambda: slow.ids("/hook") == ["msg_in_flight"], 5)
            time.sleep(0.5)  # the drain has timed out: its end stops its crew, the attempt still in flight
            outbox.stop()  # attempts in flight finish and are recorded first
            assert [(d.state, d.last_status) for d in outbox.deliveries()] == [("delivered", 200)]
            drainer.join(10)
    finally:
        slow.close()
