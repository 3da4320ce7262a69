"""One sqlite file, many writers in one process: each gets its turn.

The request threads storing into an inbox, or an app's threads calling ``outbox.send()``, write
often; the dispatcher that claims and records writes now and then. Meeting only in sqlite's busy
handler (sleep, try again, sleep longer), the rare writer lost every race: measured here, one
transaction in 2 s, waits over 2 s, so deliveries and handlers stalled while the app was busy.
"""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from webhooklite.backends._fifo import FifoLock
from webhooklite.backends.sqlite import BUSY_TIMEOUT, SQLiteBackend

ROOT = Path(__file__).resolve().parent.parent


def test_a_writer_that_comes_now_and_then_is_not_starved_by_busy_ones(tmp_path):
    backend = SQLiteBackend(str(tmp_path / "shared.db"))
    conn = backend.connect()
    with backend.transaction(conn):
        backend.execute(conn, "CREATE TABLE t (x)")
    conn.close()
    end = time.monotonic() + 2.0
    busy_done, waits = [0], []

    def busy():  # the app's threads: one committed (fsynced) write after another
        c = backend.connect()
        while time.monotonic() < end:
            with backend.transaction(c):
                backend.execute(c, "INSERT INTO t VALUES (1)")
            busy_done[0] += 1
        c.close()

    def now_and_then():  # the dispatcher: a small write every 20 ms
        c = backend.connect(durable=False)
        while time.monotonic() < end:
            asked = time.monotonic()
            with backend.transaction(c):
                waits.append(time.monotonic() - asked)
                backend.execute(c, "INSERT INTO t VALUES (2)")
            time.sleep(0.02)
        c.close()

    threads = [threading.Thread(target=busy) for _ in range(8)] + [threading.Thread(target=now_and_then)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BUSY_TIMEOUT + 5)
    assert busy_done[0] > 100  # the busy writers wrote all along
    assert len(waits) >= 20 and max(waits) < 1.0, (len(waits), max(waits))


def test_the_writer_lock_is_released_whatever_ends_the_transaction(tmp_path):
    backend = SQLiteBackend(str(tmp_path / "shared.db"))
    a, b = backend.connect(), backend.connect()
    try:
        with backend.transaction(a):
            backend.execute(a, "CREATE TABLE t (x PRIMARY KEY)")
        try:
            with backend.transaction(a):
                backend.execute(a, "INSERT INTO t VALUES (1)")
                raise RuntimeError("the app's code failed mid-transaction")
        except RuntimeError:
            pass
        try:
            with backend.transaction(a):
                backend.execute(a, "INSERT INTO t VALUES (1)")
                backend.execute(a, "INSERT INTO t VALUES (1)")  # the database refuses: a StorageError
        except Exception:
            pass
        started = time.monotonic()
        with backend.transaction(b):  # another connection of this process writes at once
            backend.execute(b, "INSERT INTO t VALUES (2)")
        assert time.monotonic() - started < 1.0
        assert backend.fetchall(b, "SELECT x FROM t ORDER BY x") == [(2,)]
    finally:
        a.close()
        b.close()


FORK_WHILE_WRITING = """
import os, sys
from webhooklite.backends import sqlite
backend = sqlite.SQLiteBackend(sys.argv[1])
conn = backend.connect()
backend.begin(conn)  # mid-transaction when the process forks (another thread's, in real life)
pid = os.fork()
if pid == 0:
    # No thread of the child will ever end the parent's transaction: its lock must not be held here.
    lock = sqlite._writer_lock(backend._key)
    os._exit(0 if lock.acquire(timeout=1) else 1)
_, status = os.waitpid(pid, 0)
backend.rollback(conn)
print(os.WEXITSTATUS(status), sqlite._writer_lock(backend._key).acquire(timeout=1), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_child_after_fork_does_not_inherit_a_held_writer_lock(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", FORK_WHILE_WRITING, str(tmp_path / "shared.db")], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "True"], out.stdout + out.stderr  # and the parent's was released


def _queued(lock, n):
    deadline = time.monotonic() + 5
    while len(lock._waiters) < n:
        assert time.monotonic() < deadline, "the waiter never queued"
        time.sleep(0.001)


def test_the_writer_lock_goes_to_its_waiters_in_the_order_they_came():
    lock = FifoLock()
    assert lock.acquire(timeout=1)
    order = []

    def wait(name):
        assert lock.acquire(timeout=5)
        order.append(name)
        lock.release()

    threads = []
    for n, name in enumerate("abcde", 1):
        threads.append(threading.Thread(target=wait, args=(name,)))
        threads[-1].start()
        _queued(lock, n)
    lock.release()
    # ...and one that asks after the hand-over began still queues behind them all
    assert lock.acquire(timeout=5)
    order.append("late")
    lock.release()
    for t in threads:
        t.join(5)
    assert order == ["a", "b", "c", "d", "e", "late"]


def test_a_writer_that_gives_up_waiting_leaves_the_queue_and_the_lock_works_on():
    lock = FifoLock()
    assert lock.acquire(timeout=1)
    started = time.monotonic()
    assert lock.acquire(timeout=0.1) is False  # held (by this same thread, as good as another): waits, says no
    assert 0.09 <= time.monotonic() - started < 2
    assert len(lock._waiters) == 0
    lock.release()
    assert lock.acquire(timeout=0)  # free again, at once
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


def test_the_writer_lock_excludes_under_timeouts_racing_hand_overs():
    lock = FifoLock()
    inside, worst, got = [0], [0], [0]
    guard = threading.Lock()
    end = time.monotonic() + 1.0

    def hammer():
        while time.monotonic() < end:
            if lock.acquire(timeout=0.0005):  # so short that many run out just as the lock is handed over
                with guard:
                    inside[0] += 1
                    worst[0] = max(worst[0], inside[0])
                    got[0] += 1
                time.sleep(0)
                with guard:
                    inside[0] -= 1
                lock.release()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert got[0] > 100 and worst[0] == 1  # never two holders at once
    assert lock.acquire(timeout=0)  # and nobody's lost turn left it held


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="setitimer is POSIX")
def test_a_writer_interrupted_while_waiting_leaves_no_turn_behind():
    # Ctrl-C (here: an exception from a signal handler) reaching a thread that waits for the lock.
    # Were its turn left queued, the next release would hand the lock to no one, for ever.
    class Interrupted(Exception):
        pass

    def interrupt(signum, frame):
        raise Interrupted

    lock = FifoLock()
    held, done = threading.Event(), threading.Event()

    def holder():
        assert lock.acquire(timeout=1)
        held.set()
        done.wait(5)
        lock.release()

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(5)
    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(Interrupted):
            lock.acquire(timeout=5)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert len(lock._waiters) == 0
    done.set()
    t.join(5)
    assert lock.acquire(timeout=1)  # the holder's release left it free, not handed to a ghost
    lock.release()
