"""The database fails too: PostgreSQL restarted or its connections killed mid-delivery; a sqlite file
locked, read-only, or on a full disk. Workers recover by themselves, nothing committed is lost,
nothing is sent twice at once, and send() says clearly why it could not store a message."""
import os
import subprocess
import threading
import time
import urllib.parse

import pytest

import webhooklite
from conftest import need_module
from test_many_hosts import Watched
from test_outbox import raw, wait_until  # noqa: F401
from webhooklite.backends import StorageError


def _stuck(outbox):
    """What is still pending, and what the running crew holds: for a failure message (never raises)."""
    try:
        return _stuck_(outbox)
    except Exception as e:
        return f"(and the outbox cannot tell what is pending: {str(e)[:300]})"


def _stuck_(outbox):
    crew = outbox._engine._crew
    held = None if crew is None else (len(crew.held), {k: len(q) for k, q in crew.queues.items()}, dict(crew.inflight),
                                      len(crew.results), [t.name for t in crew.threads if t.is_alive()])
    now = time.time()
    rows = [(d.id, d.state, d.attempts, round(d.next_at - now, 1) if d.next_at else None, d.last_error)
            for d in outbox.deliveries("pending", limit=10)]
    return f"pending {outbox.pending()}: {rows}; crew {held}"


# -- PostgreSQL -------------------------------------------------------------------------------------


def test_postgres_restarted_mid_delivery_workers_reconnect_and_nothing_is_lost(raw, private_postgres, caplog):
    secret = webhooklite.generate_secret()
    watch = Watched(secret, delay=0.004)
    server = raw(watch)
    outbox = webhooklite.Outbox(private_postgres.url, workers=4, per_endpoint=4, lease=2.0, timeout=0.5, poll=0.1)
    marks = []
    try:
        outbox.add_endpoint(server.base + "/hooks", secret=secret)
        t0 = time.monotonic()
        ids = outbox.send_many([("order.created", {"n": i}) for i in range(1000)])
        outbox.start()
        assert wait_until(lambda: watch.handled() >= 150, 15)
        marks += [t0, time.monotonic()]
        private_postgres.restart()  # pg_ctl restart -m fast: every connection is cut mid-delivery
        at_restart = watch.handled()
        marks.append(time.monotonic())
        private_postgres.stop()
        marks.append(time.monotonic())  # and an outage long enough to send into
        t = time.monotonic()
        with pytest.raises(StorageError, match="cannot reach PostgreSQL"):
            outbox.send("during.outage", {"n": -1})
        assert time.monotonic() - t < 10
        private_postgres.start()
        marks.append(time.monotonic())
        late = outbox.send("after.outage", {"n": 1000})  # the API connection is replaced by itself
        marks.append(time.monotonic())
        assert outbox.drain(timeout=40), _stuck(outbox)
        marks.append(time.monotonic())
    finally:
        outbox.close()
        marks.append(time.monotonic())
        print("first 150, restart, stop, start, send, drain, close:", [round(b - a, 2) for a, b in zip(marks, marks[1:])])
    assert at_restart < 1000, "delivered before the restart: the test proved nothing"
    assert set(watch.runs) == set(ids) | {late}, "a message was lost"
    assert set(watch.runs.values()) == {1}, "a handler ran twice"
    assert watch.overlaps == [], "a delivery was sent twice at once"
    assert "answers again" in caplog.text  # the dispatcher said it recovered


def test_the_first_send_after_a_postgres_restart_goes_through_on_a_new_connection(private_postgres):
    with webhooklite.Outbox(private_postgres.url) as outbox:
        outbox.add_endpoint("http://127.0.0.1:9/hooks")
        outbox.send("before.restart", {}, id="msg_before")
        private_postgres.restart()  # the API connection, idle, is cut; nothing tells it so until it is used
        assert outbox.send("after.restart", {}, id="msg_after") == "msg_after"  # no StorageError for that
        assert sorted(d.message_id for d in outbox.deliveries()) == ["msg_after", "msg_before"]
        private_postgres.stop()
        with pytest.raises(StorageError, match="cannot reach PostgreSQL"):  # down is still down, at once
            outbox.send("during.outage", {})


def test_connections_killed_mid_claim_workers_reconnect_and_nothing_is_lost(raw, postgres):
    psycopg = need_module("psycopg", "needs psycopg 3")
    url = postgres()
    ours = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["application_name"]
    admin_url = os.environ["WEBHOOKLITE_TEST_POSTGRES"]
    secret = webhooklite.generate_secret()
    watch = Watched(secret, delay=0.002)
    server = raw(watch)
    outbox = webhooklite.Outbox(url, workers=4, per_endpoint=4, lease=2.0, timeout=0.5, poll=0.05)
    killed = []
    stop = threading.Event()

    def killer():
        with psycopg.connect(admin_url, autocommit=True) as admin:
            while not stop.wait(0.03):  # every connection of this outbox: API, dispatcher, listener
                killed.extend(r[0] for r in admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (ours,)))

    try:
        outbox.add_endpoint(server.base + "/hooks", secret=secret)
        ids = outbox.send_many([("order.created", {"n": i}) for i in range(1000)])
        outbox.start()
        assert wait_until(lambda: watch.handled() >= 50, 15)
        k = threading.Thread(target=killer)
        k.start()
        stored, refused = [], 0
        deadline = time.monotonic() + 1.5
        n = 1000
        while time.monotonic() < deadline:  # sends while their connection keeps being killed
            n += 1
            try:
                stored.append(outbox.send("order.created", {"n": n}))
            except StorageError as e:
                assert "PostgreSQL" in str(e)
                refused += 1
            time.sleep(0.01)
        stop.set()
        k.join(10)
        assert outbox.drain(timeout=40), _stuck(outbox)
    finally:
        stop.set()
        outbox.close()
    assert len(killed) > 10 and refused > 0, (len(killed), refused)  # the connections really were cut
    assert set(ids) | set(stored) <= set(watch.runs), "a message was lost"
    assert set(watch.runs.values()) == {1}, "a handler ran twice"
    assert watch.overlaps == [], "a delivery was sent twice at once"
    print(f"{len(killed)} connections killed; {len(stored)} sends stored, {refused} refused with StorageError")


# -- sqlite -------------------------------------------------------------------------------------------


def test_sqlite_locked_file_send_raises_clearly_and_loses_nothing(raw, tmp_path, monkeypatch):
    import sqlite3

    import webhooklite.backends.sqlite as backend

    monkeypatch.setattr(backend, "BUSY_TIMEOUT", 0.3)  # seconds send() waits for the write lock
    server = raw(lambda p, h, b: (200, b""))
    path = str(tmp_path / "o.db")
    with webhooklite.Outbox(path) as outbox:
        outbox.add_endpoint(server.base + "/")
        before = outbox.send("before")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        t = time.monotonic()
        with pytest.raises(StorageError, match="locked"):
            outbox.send("while.locked")
        assert 0.25 < time.monotonic() - t < 5
        other.execute("ROLLBACK")
        other.close()
        after = outbox.send("after")
        assert outbox.drain(timeout=10)
        assert sorted(server.ids()) == sorted([before, after])


def test_sqlite_read_only_file_send_raises_clearly_and_loses_nothing(raw, tmp_path):
    server = raw(lambda p, h, b: (200, b""))
    path = str(tmp_path / "o.db")
    with webhooklite.Outbox(path) as outbox:
        outbox.add_endpoint(server.base + "/")
        kept = outbox.send("kept")
    if os.geteuid() == 0:  # root writes any file whatever its mode: make it immutable instead
        out = subprocess.run(["chattr", "+i", path], capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            pytest.skip(f"cannot make a file read-only for root here (chattr: {out.stderr.strip()})")
        undo = ["chattr", "-i", path]
    else:
        os.chmod(path, 0o444)
        undo = None
    try:
        with webhooklite.Outbox(path) as outbox:  # opens (it can read), but cannot write
            assert outbox.pending() == 1
            with pytest.raises(StorageError, match="read-only"):
                outbox.send("refused")
    finally:
        if undo:
            subprocess.run(undo, timeout=10)
        else:
            os.chmod(path, 0o644)
    with webhooklite.Outbox(path) as outbox:  # writable again: what was committed is all there
        assert outbox.drain(timeout=10)
    assert server.ids() == [kept]


def test_sqlite_full_disk_send_raises_clearly_and_loses_nothing(raw, tiny_disk):
    server = raw(lambda p, h, b: (200, b""))
    path = str(tiny_disk.path / "o.db")
    with webhooklite.Outbox(path) as outbox:
        outbox.add_endpoint(server.base + "/")
        kept = outbox.send_many([("kept", {"n": i}) for i in range(3)])
        tiny_disk.fill()
        with pytest.raises(StorageError, match="disk is full"):
            for i in range(200):  # the first send whose commit needs a new block fails
                outbox.send("refused", {"n": i, "pad": "x" * 2000})
        tiny_disk.free()
        after = outbox.send("after")
        assert outbox.drain(timeout=10)
    delivered = server.ids()
    assert set(kept) | {after} <= set(delivered)  # nothing committed was lost
    assert len(delivered) == len(set(delivered))
