"""The durable inbox: 202 before any handler runs, each handler's success recorded on its own,
retries of only what failed, dead events, retry, replay, and a database that fails: on sqlite and
on PostgreSQL (the ``db`` fixture runs each body on both)."""
import http.client
import json
import logging
import os
import threading
import time

import pytest

import webhooklite
from conftest import SECRET, signed, wait_for


def post(server, headers, body, timeout=5):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        conn.request("POST", "/", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def make(db, **options):
    options.setdefault("schedule", (0, 0.05, 0.05))
    options.setdefault("workers", 2)
    return webhooklite.Inbox(db.target, **options)


def test_202_comes_while_the_handler_is_still_blocked_then_it_runs_once(db):
    inbox = make(db)
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    release, runs = threading.Event(), []

    @receiver.on("payment.completed")
    def slow(event):
        runs.append(event.id)
        release.wait(10)  # blocked until the test has its answer

    with receiver.start() as server:
        start = time.monotonic()
        status, answer = post(server, *signed(msg_id="msg_slow"))
        took = time.monotonic() - start
        assert (status, answer) == (202, {"status": "accepted"})
        assert took < 2.0  # answered while the handler waits
        assert wait_for(lambda: runs == ["msg_slow"])  # it runs meanwhile, in the background
        # The sender's retry of the stored id: 200 duplicate, not stored again, not run again.
        assert post(server, *signed(msg_id="msg_slow")) == (200, {"status": "duplicate"})
        release.set()
        assert wait_for(lambda: inbox.event("msg_slow").state == "done")
    assert runs == ["msg_slow"]
    assert db.rows("SELECT count(*) FROM webhooklite_inbox") == [(1,)]
    inbox.close()


def test_a_bad_signature_is_401_and_nothing_is_stored(db):
    inbox = make(db)
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    receiver.on("*", lambda e: None)
    with receiver.start() as server:
        assert post(server, *signed(secret=webhooklite.generate_secret()))[0] == 401
        assert post(server, {"Content-Type": "application/json", **signed()[0]}, b'{"tampered":1}')[0] == 401
        assert post(server, *signed(body=b"{not json"))[0] == 400
    assert db.rows("SELECT count(*) FROM webhooklite_inbox") == [(0,)]
    inbox.close()


def test_an_event_no_handler_takes_is_answered_ignored_and_not_stored(db):
    inbox = make(db)
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    receiver.on("payment.*", lambda e: None)
    assert receiver.handle("POST", "/", *signed("order.shipped")).status == 200
    assert db.rows("SELECT count(*) FROM webhooklite_inbox") == [(0,)]
    inbox.close()


def test_two_handlers_the_second_failing_twice(db):
    inbox = make(db)
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    calls = {"thank_you": 0, "crm": 0}

    @receiver.on("signup.created")
    def thank_you(event):
        calls["thank_you"] += 1  # the email: must go out once

    @receiver.on("signup.*")
    def crm(event):
        calls["crm"] += 1
        if calls["crm"] <= 2:
            raise RuntimeError("CRM is down")

    assert receiver.handle("POST", "/", *signed("signup.created", msg_id="msg_2h")).status == 202
    assert inbox.drain(timeout=10)
    assert calls == {"thank_you": 1, "crm": 3}
    event = inbox.event("msg_2h")
    assert event.state == "done" and event.attempts == 3
    runs = {h.name.rsplit(".", 1)[-1]: h for h in event.handlers}
    assert runs["thank_you"].done is not None and runs["thank_you"].failures == 0
    assert runs["crm"].done is not None and runs["crm"].failures == 2
    assert "CRM is down" in runs["crm"].last_error
    inbox.close()


def test_dead_then_retry_runs_only_what_failed_and_replay_runs_everything(db):
    inbox = make(db, schedule=(0, 0.05))
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    calls = {"ok": 0, "broken": 0}
    broken = [True]

    @receiver.on("order.paid")
    def ok(event):
        calls["ok"] += 1

    @receiver.on("order.paid")
    def sometimes(event):
        calls["broken"] += 1
        if broken[0]:
            raise ValueError("bug in the handler")

    before = time.time()
    for n in range(3):
        assert receiver.handle("POST", "/", *signed("order.paid", msg_id=f"msg_d{n}")).status == 202
    assert inbox.drain(timeout=10)
    dead = inbox.dead()
    assert sorted(e.message_id for e in dead) == ["msg_d0", "msg_d1", "msg_d2"]
    assert all("bug in the handler" in e.last_error for e in dead)
    assert calls == {"ok": 3, "broken": 6}  # two attempts each: ok ran once per event
    stats = inbox.stats()
    assert (stats["dead"], stats["pending"], stats["done"]) == (3, 0, 0)

    broken[0] = False  # the bug is fixed
    inbox.retry(dead[0].id)
    assert inbox.drain(timeout=10)
    assert calls == {"ok": 3, "broken": 7}  # only the failed handler ran again
    assert inbox.event(dead[0].id).state == "done"

    assert inbox.replay(since=before) == 3  # every handler of every event received since then, again
    assert inbox.drain(timeout=10)
    assert calls == {"ok": 6, "broken": 10}
    assert inbox.stats()["done"] == 3
    assert inbox.replay(since=time.time() + 60) == 0
    assert inbox.purge(older_than=0) == 3 and inbox.stats()["done"] == 0
    inbox.close()


def test_async_handlers_and_the_handler_deadline(db, caplog):
    import asyncio

    inbox = make(db, handler_timeout=0.1)
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    seen = []

    @receiver.on("payment.completed")
    async def notify(event):
        await asyncio.sleep(0.2)  # over handler_timeout: logged, not stopped
        seen.append(event.id)

    with caplog.at_level(logging.WARNING, logger="webhooklite"):
        assert receiver.handle("POST", "/", *signed(msg_id="msg_async")).status == 202
        assert inbox.drain(timeout=10)
    assert seen == ["msg_async"]
    assert any("over handler_timeout" in r.getMessage() for r in caplog.records)
    metrics = inbox.metrics()
    assert 'webhooklite_inbox_handler_runs_total{handler="test_inbox.test_async_handlers_and_the_handler_deadline.' \
           '<locals>.notify",outcome="ok"} 1' in metrics
    assert 'webhooklite_inbox_events{state="done"} 1' in metrics
    inbox.close()


def test_one_inbox_serves_one_receiver(db):
    inbox = make(db)
    webhooklite.Receiver(SECRET, inbox=inbox)
    with pytest.raises(ValueError, match="another Receiver"):
        webhooklite.Receiver(SECRET, inbox=inbox)
    inbox.close()


def test_a_full_disk_is_503_and_loses_nothing_answered_before(tiny_disk):
    inbox = webhooklite.Inbox(str(tiny_disk.path / "inbox.db"), schedule=(0,))
    receiver = webhooklite.Receiver(SECRET, inbox=inbox, path="/")
    receiver.on("*", lambda e: None)
    inbox.autostart = False  # nothing runs: the stored events stay as they are
    assert receiver.handle("POST", "/", *signed(msg_id="msg_before")).status == 202
    tiny_disk.fill()
    big = signed(data={"pad": "x" * 200_000}, msg_id="msg_full")
    answer = receiver.handle("POST", "/", *big)
    assert answer.status == 503 and dict(answer.headers).get("Retry-After") == "5"
    tiny_disk.free()
    assert receiver.handle("POST", "/", *big).status == 202  # the sender's retry, once there is room
    assert {e.message_id for e in inbox.events()} == {"msg_before", "msg_full"}
    inbox.close()


class NamedHandler:
    """A handler whose name the test chooses (``m.<qualname>``)."""

    def __init__(self, qualname):
        self.__qualname__ = qualname
        self.__module__ = "m"
        self.runs = 0

    def __call__(self, event):
        self.runs += 1


def test_handlers_whose_names_collide_each_run_once_and_the_inbox_goes_on(db):
    # m.h, m.h and m.h#2: the second m.h must not be named m.h#2 too (on PostgreSQL the round that
    # recorded both successes failed, and every round after it).
    inbox = make(db, autostart=False)
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    handlers = [NamedHandler("h"), NamedHandler("h"), NamedHandler("h#2")]
    for h in handlers:
        receiver.on("*", h)
    try:
        for i in range(3):
            assert receiver.handle("POST", "/", *signed(msg_id=f"msg_{i}")).status == 202
        assert inbox.drain(timeout=10)
        assert [h.runs for h in handlers] == [3, 3, 3]
        assert sorted(inbox.stats()["handlers"]) == ["m.h", "m.h#2", "m.h#2#2"]
    finally:
        inbox.close()


def stored_before_a_restart(db, msg_id):
    """An event stored by a process that then died before its handler ran (autostart=False stores only)."""
    first = make(db, autostart=False)
    receiver = webhooklite.Receiver(SECRET, inbox=first)
    receiver.on("payment.completed", lambda event: None)
    headers, body = signed(msg_id=msg_id)
    assert receiver.handle("POST", "/", headers, body).status == 202
    first.close()
    return headers, body


def test_under_asgi_lifespan_startup_runs_what_was_stored_before_a_restart_and_shutdown_stops(db):
    import asyncio

    stored_before_a_restart(db, "msg_before_restart")
    inbox = make(db)
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    runs = []
    receiver.on("payment.completed", lambda event: runs.append(event.id))
    sent = []

    async def send(message):
        sent.append(message["type"])

    async def lifespan():
        messages = asyncio.Queue()  # made on the loop (Python 3.9 binds it to the loop current at creation)
        task = asyncio.ensure_future(receiver.asgi({"type": "lifespan"}, messages.get, send))
        await messages.put({"type": "lifespan.startup"})
        for _ in range(500):  # no delivery arrives in this process: startup alone runs it
            if runs:
                break
            await asyncio.sleep(0.01)
        await messages.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(task, 10)

    asyncio.run(lifespan())
    assert runs == ["msg_before_restart"] and inbox.event("msg_before_restart").state == "done"
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert not inbox._engine.running  # shutdown stopped the handlers
    inbox.close()


def test_a_duplicate_of_an_event_stored_before_a_restart_starts_the_handlers(db):
    headers, body = stored_before_a_restart(db, "msg_retried")
    inbox = make(db)
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    runs = []
    receiver.on("payment.completed", lambda event: runs.append(event.id))
    # WSGI has no lifespan: the sender's retry is the first delivery this process sees.
    answer = receiver.handle("POST", "/", headers, body)
    assert (answer.status, json.loads(answer.body)) == (200, {"status": "duplicate"})
    assert wait_for(lambda: runs == ["msg_retried"])  # handled, not left pending until a new event
    inbox.stop()
    inbox.close()


def test_what_a_handler_sets_in_a_context_variable_does_not_reach_the_next_event(db):
    import contextvars

    tenant = contextvars.ContextVar("tenant", default=None)
    inbox = make(db, workers=1, autostart=False)
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    seen = []

    @receiver.on("payment.completed")
    def bind(event):  # e.g. structlog.contextvars.bind_contextvars(tenant=...)
        seen.append((event.id, tenant.get()))
        if event.data.get("tenant"):
            tenant.set(event.data["tenant"])

    for i, data in enumerate([{"tenant": "acme"}, {}]):
        assert receiver.handle("POST", "/", *signed(msg_id=f"msg_ctx{i}", data=data)).status == 202
    assert inbox.drain(timeout=5)
    assert seen == [("msg_ctx0", None), ("msg_ctx1", None)]  # one worker thread ran both
    inbox.close()


def test_start_with_a_closed_inbox_raises_and_leaves_no_server_running(tmp_path):
    inbox = webhooklite.Inbox(str(tmp_path / "inbox.db"))
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    receiver.on("payment.completed", lambda event: None)
    inbox.close()
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(RuntimeError, match="closed"):
        receiver.start()
    assert wait_for(lambda: not {t.name for t in threading.enumerate()} - before)  # its threads ended


INBOX_APP = '''
import os, time
import webhooklite

inbox = webhooklite.Inbox(os.environ["INBOX_DB"], schedule=(0, 0.05))
receiver = webhooklite.Receiver(os.environ["WEBHOOK_SECRET"], inbox=inbox)

@receiver.on("payment.completed")
def slow(event):
    with open(os.environ["RUNS"], "a") as f:
        f.write("start " + event.id + "\\n")
    time.sleep(1.0)  # still running when SIGTERM comes
    with open(os.environ["RUNS"], "a") as f:
        f.write("end " + event.id + "\\n")

app = receiver.asgi
'''


def test_under_a_real_uvicorn_a_restarted_process_runs_what_was_pending_and_sigterm_lets_it_finish(tmp_path):
    import signal
    import subprocess
    import sys

    pytest.importorskip("uvicorn", reason="uvicorn is not installed (pip install -r tests/requirements-ci.txt)")
    from clitools import free_port, wait_for_port

    db = str(tmp_path / "inbox.db")
    first = webhooklite.Inbox(db, autostart=False)  # the process before the restart: stored, answered 202, gone
    stored = webhooklite.Receiver(SECRET, inbox=first)
    stored.on("payment.completed", lambda event: None)
    assert stored.handle("POST", "/", *signed(msg_id="msg_pending")).status == 202
    first.close()
    (tmp_path / "inboxapp.py").write_text(INBOX_APP)
    runs = tmp_path / "runs.txt"
    port = free_port()
    env = dict(os.environ, WEBHOOK_SECRET=SECRET, RUNS=str(runs), INBOX_DB=db,
               PYTHONPATH=f"{tmp_path}{os.pathsep}{os.getcwd()}")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "inboxapp:app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, server, timeout=15, output=True)
        # No delivery comes: lifespan's startup alone runs the event the last process left pending.
        assert wait_for(lambda: runs.exists() and "start msg_pending" in runs.read_text(), 10)
        server.send_signal(signal.SIGTERM)  # mid-handler: uvicorn's shutdown lets it finish and be recorded
        server.wait(15)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(5)
    assert runs.read_text().split("\n")[:2] == ["start msg_pending", "end msg_pending"]
    after = webhooklite.Inbox(db, autostart=False)
    assert after.event("msg_pending").state == "done"
    after.close()
