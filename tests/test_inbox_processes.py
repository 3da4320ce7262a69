"""The inbox with real processes: SIGKILL after the 202s, `python -m webhooklite worker`, gunicorn
workers sharing one file, two servers sharing one PostgreSQL. Every handler run is appended to a
log file (O_APPEND: one line per write, whole, from any process), so the test counts them."""
import collections
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import webhooklite
from clitools import free_port, wait_for_port
from conftest import SECRET

ROOT = Path(__file__).resolve().parent.parent

APP = '''
import os, time, webhooklite
inbox = webhooklite.Inbox(os.environ["INBOX"], workers=4, schedule=(0, 0.2, 0.2, 0.2), lease=1.5,
                          handler_timeout=0.5, autostart=os.environ.get("AUTOSTART", "1") == "1")
receiver = webhooklite.Receiver(os.environ["SECRET"], inbox=inbox)

def log(line):
    fd = os.open(os.environ["RUNS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, (line + "\\n").encode())
    os.close(fd)

@receiver.on("order.*")
def first(event):
    log(f"first start {event.id} {os.getpid()}")
    time.sleep(float(os.environ.get("SLOW", "0")))
    log(f"first end {event.id} {os.getpid()}")

@receiver.on("order.paid")
def second(event):
    log(f"second end {event.id} {os.getpid()}")
'''


def runs(path):
    """(handler, phase, message id) -> how many times, and the pids that ran anything."""
    counts = collections.Counter()
    pids = set()
    if path.exists():
        for line in path.read_text().splitlines():
            name, phase, mid, pid = line.split()
            counts[(name, phase, mid)] += 1
            pids.add(pid)
    return counts, pids


@pytest.fixture
def app(tmp_path):
    (tmp_path / "inbox_app.py").write_text(APP)

    def env(inbox, **extra):
        return dict(os.environ, INBOX=inbox, SECRET=SECRET, RUNS=str(tmp_path / "runs.log"),
                    PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}", **extra)

    return env


def serve(port, env, cwd):
    code = f"import inbox_app; inbox_app.receiver.serve(port={port})"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_port(port, proc, timeout=15, output=True)
    return proc


def deliver(urls, ids, event="order.paid"):
    """POST each id once (to the URLs in turn) with a Sender; return the statuses."""
    senders = [webhooklite.Sender(u, SECRET, retry=webhooklite.Retry(attempts=3, backoff=0.1)) for u in urls]

    def one(i):
        return senders[i % len(senders)].send(event, {"n": i}, id=ids[i]).status

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(len(ids))))
    for s in senders:
        s.close()
    return statuses


def wait_done(inbox_target, n, timeout=60):
    inbox = webhooklite.Inbox(inbox_target)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = inbox.stats()
            if st["done"] == n and st["pending"] == 0:
                return st
            time.sleep(0.1)
        return inbox.stats()
    finally:
        inbox.close()


def test_sigkill_after_the_202s_then_a_worker_runs_every_handler_none_twice_after_it_succeeded(app, tmp_path):
    target = str(tmp_path / "inbox.db")
    port = free_port()
    server = serve(port, app(target, SLOW="0.3"), tmp_path)
    ids = [f"msg_kill_{i}" for i in range(300)]
    try:
        statuses = deliver([f"http://127.0.0.1:{port}/"], ids)
        assert statuses == [202] * 300  # every one stored before its answer
        time.sleep(0.5)  # some handlers are done, some are half-way, most have not started
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(10)
    # What the dead process had recorded as done: those must never run again.
    recorded = {(handler.rsplit(".", 1)[-1], mid) for handler, mid in _handler_rows(target)}
    assert 0 < len(recorded) < 600, len(recorded)
    worker = subprocess.Popen([sys.executable, "-m", "webhooklite", "worker", "inbox_app:receiver"], cwd=tmp_path,
                              env=app(target, SLOW="0"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stats = wait_done(target, 300)
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=20)
    assert worker.returncode == 0 and "Traceback" not in err, err
    assert "webhooklite worker: stopped" in err
    assert (stats["done"], stats["pending"], stats["dead"]) == (300, 0, 0)
    counts, _ = runs(tmp_path / "runs.log")
    for mid in ids:
        for name in ("first", "second"):
            ran = counts[(name, "end", mid)]
            assert ran >= 1, (name, mid)  # every handler for every stored event
            if (name, mid) in recorded:
                assert ran == 1, (name, mid)  # none twice after its success was recorded


def _handler_rows(target):
    import sqlite3

    with sqlite3.connect(target) as c:
        return c.execute(
            "SELECT h.handler, i.message_id FROM webhooklite_inbox_handlers h "
            "JOIN webhooklite_inbox i ON i.id = h.event_id WHERE h.done IS NOT NULL"
        ).fetchall()


def test_the_worker_finishes_the_handler_in_flight_on_sigterm(app, tmp_path):
    target = str(tmp_path / "inbox.db")
    env = app(target, SLOW="1.0", AUTOSTART="0")
    receiver_env = dict(env)
    sys.path.insert(0, str(tmp_path))
    try:
        # Store one event with a receiver that runs no handlers (autostart=False), in this process.
        inbox = webhooklite.Inbox(target, autostart=False)
        receiver = webhooklite.Receiver(SECRET, inbox=inbox)
        receiver.on("order.*", lambda e: None)
        from conftest import signed

        assert receiver.handle("POST", "/", *signed("order.created", msg_id="msg_term")).status == 202
        inbox.close()
    finally:
        sys.path.pop(0)
    worker = subprocess.Popen([sys.executable, "-m", "webhooklite", "worker", "inbox_app:receiver"], cwd=tmp_path,
                              env=receiver_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while runs(tmp_path / "runs.log")[0][("first", "start", "msg_term")] == 0:
        assert time.monotonic() < deadline and worker.poll() is None, worker.communicate(timeout=5)
        time.sleep(0.02)
    worker.send_signal(signal.SIGTERM)  # mid-handler
    out, err = worker.communicate(timeout=20)
    assert worker.returncode == 0, err
    counts, _ = runs(tmp_path / "runs.log")
    assert counts[("first", "end", "msg_term")] == 1  # it finished before the worker stopped
    check = webhooklite.Inbox(target)
    assert check.event("msg_term").state == "done"
    check.close()


def test_gunicorn_two_workers_one_inbox_file(app, tmp_path):
    pytest.importorskip("gunicorn", reason="gunicorn is not installed (pip install -r tests/requirements-ci.txt)")
    target = str(tmp_path / "inbox.db")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
         "inbox_app:receiver"],
        cwd=tmp_path, env=app(target), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for_port(port, proc, timeout=15, output=True)
        ids = [f"msg_g_{i}" for i in range(500)]
        statuses = deliver([f"http://127.0.0.1:{port}/"], ids, event="order.created")
        again = deliver([f"http://127.0.0.1:{port}/"], ids[:50], event="order.created")  # redeliveries
        stats = wait_done(target, 500)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert statuses == [202] * 500 and again == [200] * 50
    assert (stats["done"], stats["pending"]) == (500, 0), stats
    counts, pids = runs(tmp_path / "runs.log")
    assert sorted(k[2] for k, n in counts.items() if k[:2] == ("first", "end")) == sorted(ids)
    assert all(n == 1 for k, n in counts.items()), [k for k, n in counts.items() if n != 1]
    assert "Traceback" not in err, err


def test_two_servers_share_one_postgresql_inbox(app, tmp_path, postgres):
    target = postgres()
    ports = [free_port(), free_port()]
    servers = [serve(p, app(target), tmp_path) for p in ports]
    try:
        ids = [f"msg_pg_{i}" for i in range(500)]
        urls = [f"http://127.0.0.1:{p}/" for p in ports]
        statuses = deliver(urls, ids, event="order.created")
        again = deliver(list(reversed(urls)), ids[:50], event="order.created")  # each retry to the other server
        stats = wait_done(target, 500)
    finally:
        for s in servers:
            s.send_signal(signal.SIGTERM)
        for s in servers:
            s.communicate(timeout=30)
    assert statuses == [202] * 500 and again == [200] * 50
    assert (stats["done"], stats["pending"]) == (500, 0), stats
    counts, pids = runs(tmp_path / "runs.log")
    assert sorted(k[2] for k, n in counts.items() if k[:2] == ("first", "end")) == sorted(ids)
    assert all(n == 1 for n in counts.values())
    assert len(pids) == 2  # both servers ran handlers
