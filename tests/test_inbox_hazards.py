"""What goes wrong around an inbox, and must not cost an event or a server: a handler that calls
sys.exit(), a claim dropped while another connection held the database, a handler that hangs at
stop(), a port already taken, message ids made of digits, a locked database under receiver.asgi."""
import asyncio
import socket
import sys
import threading
import time

import pytest

import webhooklite
from conftest import SECRET, signed, wait_for
from transports import ASGICall, asgi_scope


def hold_write_lock(db, seconds):
    """Another connection (another process, a long admin transaction) holds the inbox's tables a while."""
    taken = threading.Event()

    def hold():
        conn = db.connect()
        if db.kind == "sqlite":
            conn.isolation_level = None
            conn.execute("BEGIN IMMEDIATE")
        else:
            conn.execute("LOCK TABLE webhooklite_inbox IN EXCLUSIVE MODE")
        taken.set()
        time.sleep(seconds)
        conn.commit() if db.kind == "postgres" else conn.execute("COMMIT")
        conn.close()

    threading.Thread(target=hold, daemon=True).start()
    assert taken.wait(5)


def store(receiver, msg_id, event="payment.completed"):
    headers, body = signed(event, msg_id=msg_id)
    assert receiver.handle("POST", "/", headers, body).status == 202


def test_a_handler_calling_sys_exit_fails_and_the_worker_lives_on(db):
    inbox = webhooklite.Inbox(db.target, workers=1, schedule=(0, 0.05), poll=0.05)
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    runs = []

    @receiver.on("payment.completed")
    def handler(event):
        runs.append(event.id)
        if event.id == "msg_exit":
            sys.exit(3)  # a library giving up on a fatal error: in a thread it would end it silently

    store(receiver, "msg_exit")
    store(receiver, "msg_ok")
    assert inbox.drain(10)
    assert inbox.event("msg_ok").state == "done"  # the one worker survived msg_exit
    dead = inbox.event("msg_exit")
    assert dead.state == "dead" and "SystemExit: 3" in dead.last_error
    assert runs.count("msg_exit") == 2 and runs.count("msg_ok") == 1  # its schedule: a try and one retry
    inbox.close()


def test_a_claim_dropped_while_the_database_was_locked_runs_once_its_lease_ends(db):
    # One worker; both events claimed together. The first handler runs while another connection holds
    # the tables, so renewals wait; when it ends, the second claim has less lease left than a handler
    # may take (handler_timeout), and is not started. It must run later, in this very process.
    inbox = webhooklite.Inbox(db.target, workers=1, lease=1.5, handler_timeout=1.0, poll=0.05)
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    runs = []

    @receiver.on("payment.completed")
    def handler(event):
        runs.append(event.id)
        if event.id == "msg_a":
            hold_write_lock(db, 1.4)
            time.sleep(1.1)

    store(receiver, "msg_a")
    store(receiver, "msg_b")
    assert inbox.drain(10), f"msg_b never ran again here: {runs}"
    assert runs == ["msg_a", "msg_b"]
    assert inbox.event("msg_b").state == "done"
    inbox.close()


def test_stop_waits_for_a_hung_handler_only_as_long_as_its_timeout(tmp_path):
    inbox = webhooklite.Inbox(str(tmp_path / "inbox.db"))
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    started, release = threading.Event(), threading.Event()

    @receiver.on("payment.completed")
    def hung(event):
        started.set()
        release.wait(20)  # a third-party call that hangs

    server = receiver.start()
    try:
        headers, body = signed(msg_id="msg_hung")
        assert webhooklite.Sender(server.url, SECRET).relay(body, headers).status == 202
        assert started.wait(5)
    finally:
        t0 = time.monotonic()
        server.stop(timeout=0.5)
        took = time.monotonic() - t0
    assert took < 3, f"stop(timeout=0.5) took {took:.1f} s"
    release.set()  # the handler ends in the background, and its success is recorded
    assert wait_for(lambda: inbox.event("msg_hung").state == "done")
    inbox.close()


def _inbox_threads():
    return sum(t.name.startswith("inbox-") for t in threading.enumerate())


def test_serve_on_a_taken_port_starts_no_handler_threads(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    before = _inbox_threads()
    inbox = webhooklite.Inbox(str(tmp_path / "inbox.db"))
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    receiver.on("payment.completed", lambda event: None)
    try:
        with pytest.raises(OSError):
            receiver.serve(port=taken.getsockname()[1])
    finally:
        taken.close()
    assert wait_for(lambda: _inbox_threads() <= before, 2), "the inbox's threads run with no server"
    inbox.close()


def test_a_message_id_of_digits_is_found_by_its_message_id(tmp_path):
    inbox = webhooklite.Inbox(str(tmp_path / "inbox.db"), autostart=False)
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    receiver.on("payment.completed", lambda event: None)
    store(receiver, "2")
    store(receiver, "1001")  # row id 2
    assert inbox.event("1001").message_id == "1001"
    assert inbox.event("2").message_id == "2"
    assert inbox.event(2).message_id == "1001"  # an int is the row id
    assert inbox.event("1").message_id == "2"  # digits that are no message id: the row id, as the CLI types it
    with pytest.raises(KeyError):
        inbox.event("3")
    inbox.close()


def test_under_asgi_the_inbox_write_never_stalls_the_event_loop(db):
    inbox = webhooklite.Inbox(db.target, autostart=False)
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    receiver.on("payment.completed", lambda event: None)
    headers, body = signed(msg_id="msg_locked")
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    receiver.handle("POST", "/", *signed(msg_id="msg_warm"))  # the schema is made before the lock is taken

    async def go():
        stalls = []

        async def tick():
            while True:
                t0 = time.monotonic()
                await asyncio.sleep(0.01)
                stalls.append(time.monotonic() - t0)

        ticker = asyncio.ensure_future(tick())
        hold_write_lock(db, 1.0)
        call = ASGICall([body])
        await asyncio.wait_for(receiver.asgi(asgi_scope("POST", "/", raw), call.receive, call.send), 10)
        ticker.cancel()
        return call, max(stalls)

    call, stall = asyncio.run(go())
    assert call.answer()[0] == 202
    assert stall < 0.5, f"the event loop stood still {stall:.2f} s while the inbox waited for the database"
    inbox.close()
