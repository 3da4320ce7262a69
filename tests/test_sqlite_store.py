"""SQLiteStore: the dedupe record that several receiver processes share, in one sqlite3 file."""
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import webhooklite

ROOT = Path(__file__).resolve().parent.parent


def test_begin_commit_abort_like_the_memory_store(tmp_path):
    store = webhooklite.SQLiteStore(tmp_path / "seen.db")
    assert store.begin("msg_1") == "new"
    assert store.begin("msg_1") == "busy"  # being handled
    store.abort("msg_1")  # the handlers failed: it may be handled again
    assert store.begin("msg_1") == "new"
    store.commit("msg_1")
    assert store.begin("msg_1") == "done"
    store.abort("msg_1")  # an abort never forgets a success
    assert store.begin("msg_1") == "done"
    assert store.begin("msg_2") == "new"
    assert len(store) == 1
    store.close()
    again = webhooklite.SQLiteStore(tmp_path / "seen.db")  # it is on disk
    assert again.begin("msg_1") == "done"
    assert again.begin("msg_2") == "busy"
    again.close()


def test_a_busy_mark_left_by_a_crashed_process_expires(tmp_path):
    crashed = webhooklite.SQLiteStore(tmp_path / "seen.db", busy_for=0.3)
    assert crashed.begin("msg_1") == "new"  # ...and the process dies before commit or abort
    other = webhooklite.SQLiteStore(tmp_path / "seen.db", busy_for=0.3)
    assert other.begin("msg_1") == "busy"
    time.sleep(0.35)
    assert other.begin("msg_1") == "new"
    assert crashed.begin("msg_1") == "busy"  # taken over: only one owner at a time
    other.commit("msg_1")
    assert crashed.begin("msg_1") == "done"
    with pytest.raises(ValueError):
        webhooklite.SQLiteStore(tmp_path / "x.db", busy_for=0)


def test_old_handled_ids_are_forgotten_after_keep(tmp_path):
    store = webhooklite.SQLiteStore(tmp_path / "seen.db", keep=0.2)
    store.commit("msg_old")
    time.sleep(0.25)
    store.commit("msg_new")
    assert store.begin("msg_old") == "new"
    assert store.begin("msg_new") == "done"


def rows(path):
    import sqlite3

    with sqlite3.connect(path) as c:
        return sorted(c.execute("SELECT id, done FROM handled"))


def test_a_late_abort_never_removes_the_claim_that_took_over(tmp_path):
    # Three processes: the first's handler outlives busy_for, a second takes the id over, then the
    # first fails. Its abort must not free the id while the second is still running the handlers.
    path = tmp_path / "seen.db"
    first, second, third = (webhooklite.SQLiteStore(path, busy_for=0.2) for _ in range(3))
    assert first.begin("msg_1") == "new"
    time.sleep(0.25)
    assert second.begin("msg_1") == "new"  # taken over, as documented
    first.abort("msg_1")  # the first one's handler failed, late
    assert third.begin("msg_1") == "busy"  # the second still holds it
    first.commit("msg_2")  # a commit touches only its own claim too
    second.commit("msg_1")
    assert third.begin("msg_1") == "done"
    assert first.begin("msg_1") == "done"


def on_another_thread(fn, *args):
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result(5)


def test_a_claim_begun_on_one_thread_is_committed_or_aborted_from_another(tmp_path):
    # receiver.asgi runs a store's begin and its commit as two hops to its worker threads, which
    # may be two threads: the commit must still count (it left the id busy: the sender's retry got
    # 409, and after busy_for the handlers ran again).
    store = webhooklite.SQLiteStore(tmp_path / "seen.db")
    assert on_another_thread(store.begin, "msg_1") == "new"
    store.commit("msg_1")
    assert store.begin("msg_1") == "done"
    assert on_another_thread(store.begin, "msg_2") == "new"
    store.abort("msg_2")
    assert store.begin("msg_2") == "new"  # failed: handled again


def test_two_claims_on_one_id_in_one_process_and_a_commit_from_a_third_thread(tmp_path):
    # The first claim outlived busy_for and a second thread took it over. A thread holding neither
    # cannot tell which is its own: its abort removes neither claim; its commit marks the id done.
    store = webhooklite.SQLiteStore(tmp_path / "seen.db", busy_for=0.2)
    began, finish, said = [threading.Event(), threading.Event()], threading.Event(), []

    def holder(k):  # alive until the end, so the two threads stay two
        said.append(store.begin("msg_1"))
        began[k].set()
        finish.wait(5)

    threads = [threading.Thread(target=holder, args=(k,)) for k in range(2)]
    threads[0].start()
    assert began[0].wait(5)
    time.sleep(0.25)
    threads[1].start()  # takes the id over
    assert began[1].wait(5) and said == ["new", "new"]
    store.abort("msg_1")  # from a third thread: neither claim is removed
    assert store.begin("msg_1") == "busy"
    store.commit("msg_1")  # but a success from a third thread counts: the handlers ran once
    assert store.begin("msg_1") == "done"
    finish.set()
    for t in threads:
        t.join(5)


def test_done_is_answered_only_within_keep_even_without_a_sweep(tmp_path):
    store = webhooklite.SQLiteStore(tmp_path / "seen.db", keep=0.2)
    store.commit("msg_1")
    assert store.begin("msg_1") == "done"
    store._next_sweep = float("inf")  # no sweep runs: begin() itself looks at the age
    time.sleep(0.5)  # 2.5 x keep
    assert store.begin("msg_1") == "new"


def test_abandoned_busy_rows_and_old_ids_are_removed(tmp_path):
    path = tmp_path / "seen.db"
    crashed = webhooklite.SQLiteStore(path, busy_for=0.2, keep=0.2)
    assert crashed.begin("msg_crashed") == "new"  # ...and that process never comes back
    crashed.commit("msg_old")
    alive = webhooklite.SQLiteStore(path, busy_for=0.2, keep=0.2)
    time.sleep(0.3)
    assert alive.begin("msg_new") == "new"
    assert rows(path) == [("msg_new", 0)]


def test_a_file_from_0_1_keeps_its_ids(tmp_path):
    import sqlite3

    path = tmp_path / "seen.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE handled (id TEXT PRIMARY KEY, done INTEGER NOT NULL, at REAL NOT NULL)")
        c.execute("INSERT INTO handled VALUES ('msg_1', 1, ?)", (time.time(),))
    store = webhooklite.SQLiteStore(path)
    assert store.begin("msg_1") == "done" and store.begin("msg_2") == "new"


def test_only_one_of_many_threads_gets_new(tmp_path):
    store = webhooklite.SQLiteStore(tmp_path / "seen.db")
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: store.begin("msg_race"), range(64)))
    assert answers.count("new") == 1 and set(answers) == {"new", "busy"}


RECEIVER = """
import sys, time, webhooklite
path, log = sys.argv[1], sys.argv[2]
receiver = webhooklite.Receiver(None, store=webhooklite.SQLiteStore(path))

@receiver.on("*")
def handle(event):
    time.sleep(0.02)  # long enough for the other process to see the same id meanwhile
    with open(log, "a") as f:
        f.write(event.id + "\\n")

with receiver.start() as server:
    print(server.url, flush=True)
    sys.stdin.readline()
"""


def test_two_receiver_processes_sharing_the_file_handle_each_message_once(tmp_path):
    db, log = str(tmp_path / "seen.db"), str(tmp_path / "handled.log")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen([sys.executable, "-c", RECEIVER, db, log], env=env, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    try:
        urls = []
        for p in procs:
            line = []
            t = threading.Thread(target=lambda: line.append(p.stdout.readline()), daemon=True)
            t.start()
            t.join(10)
            assert line and line[0].startswith("http://"), p.stderr.read() if p.poll() is not None else ""
            urls.append(line[0].strip())
        senders = [webhooklite.Sender(u, timeout=5, retry=webhooklite.Retry(attempts=1)) for u in urls]
        ids = [f"msg_shared_{i}" for i in range(40)]
        seen = []

        def deliver(job):
            # 409 means "the other process is handling this id right now": come back, as a sender would.
            for _ in range(100):
                d = job[0].send("order.created", {"n": 1}, id=job[1])
                seen.append(d.status)
                if d.status != 409:
                    return d
                time.sleep(0.02)
            return d

        # Every message goes to both processes at the same moment, like a retry landing on another worker.
        jobs = [(s, i) for i in ids for s in senders]
        with ThreadPoolExecutor(8) as pool:
            deliveries = list(pool.map(deliver, jobs))
        assert all(d.ok for d in deliveries), [d for d in deliveries if not d.ok][:3]
        assert 409 in seen  # the two processes did meet on the same id
        for s in senders:
            s.close()
    finally:
        for p in procs:
            try:
                p.stdin.write("\n")
                p.stdin.flush()
            except OSError:
                pass
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            for f in (p.stdin, p.stdout, p.stderr):
                f.close()
    handled = Path(log).read_text().split()
    assert sorted(handled) == sorted(ids)  # every id handled, each exactly once across both processes
    assert all(p.returncode == 0 for p in procs)


FORKING_STORE = """
import os, sys, webhooklite
store = webhooklite.SQLiteStore(sys.argv[1])   # opened in the master (gunicorn --preload)
store.commit("msg_parent")
inherited = store._conn
pid = os.fork()
if pid == 0:
    ok = store.begin("msg_parent") == "done" and store.begin("msg_child") == "new"
    store.commit("msg_child")
    os._exit(0 if ok and store._conn is not inherited else 1)
_, status = os.waitpid(pid, 0)
print(os.WEXITSTATUS(status), store._conn is inherited, store.begin("msg_child"), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_store_opened_before_fork_gets_its_own_connection_in_the_child(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", FORKING_STORE, str(tmp_path / "seen.db")], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "True", "done"]  # the child used its own; the parent kept its
