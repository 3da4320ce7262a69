"""The outbox holes of issue 10 (items 14-18, and the outbox's part of 12 and 19), one test each.

Each failed on 0.1 (main before the engine split); every test taking ``db`` runs on sqlite and
on PostgreSQL.
"""
import logging
import subprocess
import sys
import threading
import time

import pytest

import webhooklite
from test_outbox import EveryRequest, counting_receiver, python, raw, read_line, wait_until  # noqa: F401
from webhooklite.backends import StorageError


# -- 14: re-adding an endpoint changes only what the call passes; update_endpoint -----------------


def test_re_adding_an_endpoint_keeps_its_secret_scheme_headers_and_timeout(raw, db):
    secret = "github-secret"
    receiver = webhooklite.Receiver(secret, scheme="github")
    seen = []
    receiver.on("*", lambda e: seen.append(e.id))

    def decide(path, headers, body):
        r = receiver.handle("POST", path, headers, body)
        return r.status, r.body

    server = raw(decide)
    with webhooklite.Outbox(db.target, schedule=(0,)) as outbox:
        eid = outbox.add_endpoint(server.base + "/gh", secret=secret, scheme="github", events=["push"],
                                  headers={"X-Team": "store"}, timeout=3)
        # What an app does at every start: the same URL, fewer arguments.
        assert outbox.add_endpoint(server.base + "/gh", events=["push", "issues.*"]) == eid
        (e,) = outbox.endpoints()
        assert (e.scheme, e.headers, e.timeout, e.events) == ("github", {"X-Team": "store"}, 3.0, ("push", "issues.*"))
        mid = outbox.send("push", {"ref": "main"})
        assert outbox.drain(timeout=10)
        assert seen == [mid], outbox.deliveries()  # signed with the kept secret and scheme: verified
        assert server.requests[0][2]["x-team"] == "store"


def test_update_endpoint_changes_only_what_is_passed(raw, db):
    server = raw(lambda p, h, b: (200, b""))
    with webhooklite.Outbox(db.target, schedule=(0,)) as outbox:
        a = outbox.add_endpoint(server.base + "/a", secret="whsec_" + "A" * 40, headers={"X-A": "1"}, timeout=4)
        b = outbox.add_endpoint(server.base + "/b")
        e = outbox.update_endpoint(a, headers={"X-A": "2"})
        assert (e.headers, e.timeout, e.scheme) == ({"X-A": "2"}, 4.0, "standard")
        outbox.send("ping")
        assert outbox.drain(timeout=10)
        (req,) = [r for r in server.requests if r[1] == "/a"]
        assert req[2]["x-a"] == "2" and req[2]["webhook-signature"].startswith("v1,")  # still signed
        e = outbox.update_endpoint(server.base + "/a", secret=None, url=server.base + "/a2")
        assert e.url == server.base + "/a2"
        outbox.send("ping")
        assert outbox.drain(timeout=10)
        assert "webhook-signature" not in [r for r in server.requests if r[1] == "/a2"][0][2]  # secret=None: unsigned
        with pytest.raises(TypeError, match="enabled"):
            outbox.update_endpoint(a, enabled=False)
        with pytest.raises(ValueError, match="already has the URL"):
            outbox.update_endpoint(a, url=server.base + "/b")
        with pytest.raises(ValueError):
            outbox.update_endpoint(b, timeout=0)
        with pytest.raises(KeyError):
            outbox.update_endpoint(999, timeout=1)


# -- 15: a paused endpoint loses nothing; a send that reaches no endpoint is a WARNING -----------


def test_a_disabled_endpoints_deliveries_wait_and_go_out_once_enabled(raw, db):
    server = raw(lambda p, h, b: (200, b""))
    with webhooklite.Outbox(db.target) as outbox:
        ci = outbox.add_endpoint(server.base + "/ci")
        outbox.disable_endpoint(ci, reason="CI is down")
        ids = outbox.send_many([("build.done", {"n": i}) for i in range(3)])
        assert [d.state for d in outbox.deliveries(endpoint=ci)] == ["pending"] * 3
        assert outbox.pending() == 0 and outbox.drain(timeout=5)  # waiting for a paused endpoint is not pending
        assert server.requests == []
        outbox.enable_endpoint(ci)
        assert outbox.drain(timeout=10)
        assert sorted(server.ids()) == sorted(ids)


def test_a_send_that_reaches_no_endpoint_is_a_warning(db, caplog):
    with webhooklite.Outbox(db.target) as outbox:
        outbox.add_endpoint("http://127.0.0.1:9/", events=["order.*"])
        with caplog.at_level(logging.DEBUG, logger="webhooklite"):
            mid = outbox.send("user.deleted", {"user": 7})
        (record,) = [r for r in caplog.records if mid in r.getMessage()]
        assert record.levelno == logging.WARNING and "no endpoint" in record.getMessage()
        assert outbox.deliveries(message_id=mid) == []


# -- 16: stop(timeout) that times out; drain() that says what it does ----------------------------


def test_a_stop_that_times_out_does_not_wedge_the_outbox(raw, db, caplog):
    release = threading.Event()

    def decide(path, headers, body):
        if path == "/slow":
            release.wait(5)
        return 200, b""

    server = raw(decide)
    outbox = webhooklite.Outbox(db.target, timeout=8, lease=20)
    try:
        slow = outbox.add_endpoint(server.base + "/slow", events=["slow"])
        outbox.add_endpoint(server.base + "/fast", events=["fast"])
        outbox.send("slow")
        outbox.start()
        assert wait_until(lambda: len(server.ids("/slow")) == 1, 5)
        t = time.monotonic()
        outbox.stop(timeout=0.2)  # the slow attempt is still in flight
        assert time.monotonic() - t < 2 and "timed out" in caplog.text
        outbox.start()  # was: RuntimeError("stop() has not finished yet")
        mid = outbox.send("fast")
        assert wait_until(lambda: mid in server.ids("/fast"), 5)  # the new workers deliver at once
        release.set()
        assert outbox.drain(timeout=10)
        # The attempt in flight was recorded by the crew that made it, and never sent twice.
        assert len(server.ids("/slow")) == 1 and outbox.stats()[slow]["delivered"] == 1
    finally:
        release.set()
        outbox.close()


def test_drain_due_only_delivers_what_is_due_and_returns(raw, db):
    server = raw(lambda p, h, b: (500, b"") if p == "/down" else (200, b""))
    with webhooklite.Outbox(db.target, schedule=(0, 3600)) as outbox:
        outbox.add_endpoint(server.base + "/down")
        outbox.add_endpoint(server.base + "/up")
        outbox.send_many([("ping", {"n": i}) for i in range(5)])
        t = time.monotonic()
        assert outbox.drain(due_only=True, timeout=10)  # "deliver what is due and exit"
        assert time.monotonic() - t < 5
        assert len(server.ids("/up")) == 5 and len(server.ids("/down")) == 5
        assert outbox.pending() == 5  # the failures wait for their retry, an hour away...
        assert outbox.drain(timeout=0.3) is False  # ...which a plain drain() waits for
        assert not outbox.running


# -- 17: batch() rolls back a failed COMMIT; SQLite older than 3.24 is refused --------------------


def _refuse_commit_of_doomed(db, outbox):
    """Make the COMMIT of a transaction that stored a 'doomed' message fail, as each database can:
    a deferred check, run at COMMIT (a deferred foreign key on sqlite, a constraint trigger on PostgreSQL)."""
    conn = db.connect()
    if db.kind == "postgres":
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$")
        conn.execute(
            "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON webhooklite_messages "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.event = 'doomed') EXECUTE PROCEDURE refuse()")
    else:
        conn.executescript(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
            "CREATE TABLE child (pid INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);"
            "CREATE TRIGGER doom AFTER INSERT ON webhooklite_messages WHEN NEW.event = 'doomed' "
            "BEGIN INSERT INTO child VALUES (42); END;")
        outbox._api_conn.execute("PRAGMA foreign_keys = ON")  # checked by the connection that writes
    conn.commit()
    conn.close()


def test_batch_rolls_back_when_commit_fails(raw, db):
    server = raw(lambda p, h, b: (200, b""))
    with webhooklite.Outbox(db.target) as outbox:
        outbox.add_endpoint(server.base + "/")
        kept = outbox.send("before", {"n": 0})
        _refuse_commit_of_doomed(db, outbox)
        with pytest.raises(StorageError):
            with outbox.batch():
                outbox.send("fine", {"n": 1})
                outbox.send("doomed", {"n": 2})
        after = outbox.send("after", {"n": 3})  # was: "cannot start a transaction within a transaction"
        assert outbox.drain(timeout=10)
        assert sorted(server.ids()) == sorted([kept, after])
        assert {d.event for d in outbox.deliveries()} == {"before", "after"}  # nothing of the batch


def test_sqlite_older_than_3_25_is_refused_with_a_clear_error(tmp_path):
    # 3.24 for UPSERT; 3.25 since issue 14, for the window functions of stats()' percentiles.
    code = (
        "import sqlite3, sys, webhooklite\n"
        "sqlite3.sqlite_version_info, sqlite3.sqlite_version = (3, 24, 0), '3.24.0'\n"
        "try:\n"
        "    webhooklite.Outbox(sys.argv[1])\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "o.db")], capture_output=True, text=True,
                         timeout=30, env={"PYTHONPATH": str(__import__("pathlib").Path(__file__).parent.parent)})
    assert "needs SQLite 3.25 or newer" in out.stdout and "3.24.0" in out.stdout, out.stderr


# -- 18: a second worker process shares the backlog from the start -------------------------------

SHARING_WORKER = """
import sys, webhooklite
outbox = webhooklite.Outbox(sys.argv[1], poll=0.05, workers=2)
print("ready", flush=True)
sys.stdin.readline()
print(outbox.drain(timeout=20), flush=True)
outbox.close()
"""


def test_two_worker_processes_share_a_backlog_to_a_slow_endpoint(db):
    receiver, requests = counting_receiver(None, delay=0.05, store=EveryRequest())  # 20 requests/s a slot
    with receiver.start() as server:
        with webhooklite.Outbox(db.target) as outbox:
            outbox.add_endpoint(server.url)
            outbox.send_many([("order.created", {"n": i}) for i in range(20)])
        workers = [python(SHARING_WORKER, db.target, stdin=subprocess.PIPE) for _ in range(2)]
        try:
            for w in workers:
                assert read_line(w) == "ready"
            for w in workers:
                w.stdin.write("go\n")
                w.stdin.flush()
            for w in workers:
                assert read_line(w, 25) == "True"
        finally:
            for w in workers:
                w.kill()
                w.wait(5)
                for f in (w.stdin, w.stdout, w.stderr):
                    f.close()
    assert sorted(requests.values()) == [1] * 20
    by_worker = dict(db.rows("SELECT worker, count(*) FROM webhooklite_attempts GROUP BY worker"))
    # 0.1 claimed 16 per slot before it knew the pace: the first process took 16 of the 20 at once.
    print("shared:", sorted(by_worker.values()))
    assert len(by_worker) == 2 and min(by_worker.values()) >= 6, by_worker


# -- 12: a Retry-After longer than the schedule is honoured (up to a day) -------------------------


def test_a_retry_after_beyond_the_schedule_is_honoured(raw, db):
    answers = [(429, b"later", {"Retry-After": "1"}), (200, b"")]
    server = raw(lambda p, h, b: answers.pop(0) if len(answers) > 1 else answers[0])
    with webhooklite.Outbox(db.target, schedule=(0, 0.05, 0.05)) as outbox:
        outbox.add_endpoint(server.base + "/")
        outbox.send("ping")
        assert outbox.drain(timeout=10)
        (d,) = outbox.deliveries("delivered")
        a1, a2 = outbox.attempts(d.id)
        assert a2.at - (a1.at + a1.duration) >= 0.95  # 0.1 cut it to the schedule's longest, 0.05 s


# -- 19: one rule for event patterns --------------------------------------------------------------


def test_the_outbox_and_the_router_share_one_pattern_rule():
    from webhooklite import outbox_store
    from webhooklite.events import Router, matches

    assert outbox_store.matches is matches
    assert matches(["payment.*"], "payment.completed") and matches("*", None) and not matches(["a.*"], None)
    assert not matches(["payment.*"], "order.created") and matches(["order.created", "x"], "order.created")
    router = Router()
    router.add("payment.[cr]*", print)
    assert router.match("payment.refunded") == (print,) and matches("payment.[cr]*", "payment.refunded")


def test_a_worker_whose_lease_is_shorter_than_an_endpoints_timeout_still_delivers(raw, db, caplog):
    server = raw(lambda p, h, b: (200, b""))
    with webhooklite.Outbox(db.target, lease=60) as app:  # the app stores the endpoint: timeout 10 s
        app.add_endpoint(server.base + "/", timeout=10)
        mid = app.send("ping")
    # A worker started with a 1 s lease: a 10 s attempt would outlive its claims.
    with webhooklite.Outbox(db.target, lease=1.0, timeout=0.5) as worker:
        assert worker.drain(timeout=10)
    assert server.ids() == [mid]
    assert "time out after 0.5 s" in caplog.text
