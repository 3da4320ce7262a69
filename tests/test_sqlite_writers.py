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
    os._exit(0 if lock.acquire(timeout=1) is not None else 1)
_, status = os.waitpid(pid, 0)
backend.rollback(conn)
print(os.WEXITSTATUS(status), sqlite._writer_lock(backend._key).acquire(timeout=1) is not None, flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_child_after_fork_does_not_inherit_a_held_writer_lock(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", FORK_WHILE_WRITING, str(tmp_path / "shared.db")], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "True"], out.stdout + out.stderr  # and the parent's was released


def _waiting(lock):
    """How many wait for the lock (the queue's first hold is the holder's)."""
    return max(len(lock._queue) - 1, 0)


def _queued(lock, n):
    deadline = time.monotonic() + 5
    while _waiting(lock) < n:
        assert time.monotonic() < deadline, "the waiter never queued"
        time.sleep(0.001)


def _free(lock):
    """Whether the lock can be had at once (and gives it back)."""
    hold = lock.acquire(timeout=0)
    if hold is not None:
        lock.release(hold)
    return hold is not None


def test_the_writer_lock_goes_to_its_waiters_in_the_order_they_came():
    lock = FifoLock()
    first = lock.acquire(timeout=1)
    assert first is not None
    order = []

    def wait(name):
        hold = lock.acquire(timeout=5)
        assert hold is not None
        order.append(name)
        lock.release(hold)

    threads = []
    for n, name in enumerate("abcde", 1):
        threads.append(threading.Thread(target=wait, args=(name,)))
        threads[-1].start()
        _queued(lock, n)
    lock.release(first)
    # ...and one that asks after the hand-over began still queues behind them all
    late = lock.acquire(timeout=5)
    assert late is not None
    order.append("late")
    lock.release(late)
    for t in threads:
        t.join(5)
    assert order == ["a", "b", "c", "d", "e", "late"]


def test_a_writer_that_gives_up_waiting_leaves_the_queue_and_a_hold_ends_once():
    lock = FifoLock()
    hold = lock.acquire(timeout=1)
    started = time.monotonic()
    assert lock.acquire(timeout=0.1) is None  # held (by this same thread, as good as another): waits, says no
    assert 0.09 <= time.monotonic() - started < 2
    assert _waiting(lock) == 0
    lock.release(hold)
    other = lock.acquire(timeout=0)  # free again, at once
    assert other is not None
    lock.release(hold)  # a hold that is over: nothing happens (so an interrupted release may be retried)
    assert not _free(lock)  # ...in particular, it does not end the other one
    lock.release(other)
    assert _free(lock)


def test_the_writer_lock_excludes_under_timeouts_racing_hand_overs():
    lock = FifoLock()
    inside, worst, got = [0], [0], [0]
    guard = threading.Lock()
    end = time.monotonic() + 1.0

    def hammer():
        while time.monotonic() < end:
            hold = lock.acquire(timeout=0.0005)  # so short that many run out just as the lock is handed over
            if hold is not None:
                with guard:
                    inside[0] += 1
                    worst[0] = max(worst[0], inside[0])
                    got[0] += 1
                time.sleep(0)
                with guard:
                    inside[0] -= 1
                lock.release(hold)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert got[0] > 100 and worst[0] == 1  # never two holders at once
    assert _free(lock)  # and nobody's lost turn left it held


class Interrupted(BaseException):
    """What a signal handler raises (KeyboardInterrupt, here a stand-in the test runner will not catch)."""


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="setitimer is POSIX")
def test_a_writer_interrupted_while_waiting_leaves_no_turn_behind():
    # Ctrl-C (here: an exception from a SIGALRM handler) reaching a thread that waits for the lock.
    # Were its turn left queued, the next release would hand the lock to no one, for ever.
    def interrupt(signum, frame):
        raise Interrupted

    lock = FifoLock()
    held, done = threading.Event(), threading.Event()

    def holder():
        hold = lock.acquire(timeout=1)
        held.set()
        done.wait(5)
        lock.release(hold)

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
    assert _waiting(lock) == 0
    done.set()
    t.join(5)
    assert _free(lock)  # the holder's release left it free, not handed to a ghost


class _Raising:
    """Stands in for one of FifoLock's inner objects and raises Interrupted once, after its call
    went through: a signal handler run as that call returns (CPython checks for them there)."""

    def __init__(self, inner, method):
        self.inner, self.method, self.armed = inner, method, True

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name != self.method:
            return attr

        def call(*args, **kwargs):
            result = attr(*args, **kwargs)
            if self.armed:
                self.armed = False
                raise Interrupted
            return result

        return call

    def __contains__(self, item):
        return item in self.inner

    def __getitem__(self, index):
        return self.inner[index]

    def __iter__(self):
        return iter(self.inner)

    def __len__(self):
        return len(self.inner)

    def __bool__(self):
        return bool(self.inner)

    def __enter__(self):
        return self.inner.__enter__()

    def __exit__(self, *exc):
        out = self.inner.__exit__(*exc)
        if self.armed and self.method == "__exit__":
            self.armed = False
            raise Interrupted
        return out


def _interrupt_in(lock, field, method, release_at):
    """acquire(timeout=0.2) interrupted as ``lock.<field>.<method>`` returns. With ``release_at``,
    another thread holds the lock and lets go after that many seconds (before the wait runs out, or
    after). Whatever acquire had got, the lock must be free once that thread has let go."""
    timer = None
    if release_at is not None:
        hold = lock.acquire(timeout=1)
        timer = threading.Timer(release_at, lock.release, (hold,))
    setattr(lock, field, _Raising(getattr(lock, field), method))
    if timer is not None:
        timer.start()
    with pytest.raises(Interrupted):
        lock.acquire(timeout=0.2)
    setattr(lock, field, getattr(lock, field).inner)
    if timer is not None:
        timer.join(5)
    return _free(lock) and _waiting(lock) == 0


@pytest.mark.parametrize("field, method, release_at", [
    ("_mutex", "__exit__", None),  # the lock just taken, as the mutex is let go
    ("_queue", "append", 0.05),  # queued, not yet waiting
    ("_mutex", "__exit__", 0.05),  # queued, as the mutex is let go
    ("_queue", "remove", 0.3),  # the wait ran out (the holder holds on): as it leaves the queue
])
def test_an_interrupt_anywhere_in_acquire_gives_back_what_it_got(field, method, release_at):
    assert _interrupt_in(FifoLock(), field, method, release_at)


@pytest.mark.parametrize("when", ["before", "after"])
def test_an_interrupted_release_is_retried_and_ends_the_hold_once(tmp_path, when):
    # What SQLiteBackend._release does when a signal lands as release() begins, or as it ends.
    backend = SQLiteBackend(str(tmp_path / "shared.db"))
    a, b = backend.connect(), backend.connect()
    try:
        backend.begin(a)
        lock, _ = backend._holding[id(a)]
        real = lock._pass_on

        def interrupted_pass_on():
            del lock._pass_on  # once
            if when == "after":
                real()
            raise Interrupted

        lock._pass_on = interrupted_pass_on
        with pytest.raises(Interrupted):
            backend.rollback(a)
        assert backend._holding == {}
        assert _free(lock)  # let go, and not given to anyone else
        started = time.monotonic()
        backend.begin(b)
        backend.rollback(b)
        assert time.monotonic() - started < 1.0
    finally:
        a.close()
        b.close()


def test_a_release_retried_after_an_interrupt_wakes_the_next_writer_at_once():
    # The interrupt lands inside the hand-over, after the holder left the queue and before the next
    # was woken: the next holds the lock but sleeps. Retrying the release (as _release does) wakes it.
    lock = FifoLock()
    first = lock.acquire(timeout=1)
    got = threading.Event()

    def waiter():
        hold = lock.acquire(timeout=5)
        got.set()
        lock.release(hold)

    t = threading.Thread(target=waiter)
    t.start()
    _queued(lock, 1)

    def pass_on_cut_short():
        del lock._pass_on  # once
        lock._queue.popleft()
        raise Interrupted

    lock._pass_on = pass_on_cut_short
    with pytest.raises(Interrupted):
        lock.release(first)
    lock.release(first)  # the retry
    assert got.wait(1), "the next writer slept on until its wait ran out"
    t.join(5)
    assert _free(lock)
