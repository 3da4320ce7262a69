"""receiver.asgi: what runs on the event loop and what in a worker thread, and the worker threads' rules.

The checks before the handlers run on the loop only when they cannot block (an HMAC signature,
a small body, the in-memory store); a sync handler always runs in a thread. The threads carry
the request's context, skip work whose request was cancelled, survive a closed loop and a fork.
"""
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import webhooklite
from conftest import SECRET, signed
from transports import ASGICall, asgi_scope, run_asgi

ROOT = Path(__file__).resolve().parent.parent

# Runs each scenario in a fresh process, so that every worker thread is started (and
# profiled) after threading.setprofile: it prints which thread ran what, per scenario.
WHERE = r'''
import asyncio, json, sys, threading
sys.path.insert(0, "tests")
import webhooklite
from conftest import SECRET, signed
from transports import asgi_scope, run_asgi

WATCH = {"check": webhooklite.Signer.check, "begin": webhooklite.MemoryStore.begin,
         "sqlite_begin": webhooklite.SQLiteStore.begin, "sqlite_commit": webhooklite.SQLiteStore.commit}
CODES = {fn.__code__: name for name, fn in WATCH.items()}
seen = []

def profile(frame, event, arg):
    if event == "call":
        name = CODES.get(frame.f_code) or ("handler" if frame.f_code.co_name.startswith("handler") else None)
        if name:
            seen.append((name, threading.current_thread().name))

threading.setprofile(profile)
sys.setprofile(profile)

def raw(headers, body):
    pairs = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return pairs + [(b"content-length", str(len(body)).encode())]

def call(receiver, headers, body):
    return run_asgi(receiver.asgi, asgi_scope("POST", "/", raw(headers, body)), [body]).answer()[0]

def scenario(sync, secret=SECRET, store=None, big=False, repeat=False, forged=False):
    sign_with = SECRET
    if secret == "v1a":
        sign_with, secret = webhooklite.generate_keypair()  # signed with the whsk_ key, verified with whpk_
    receiver = webhooklite.Receiver(secret, store=store)
    if sync:
        def handler_sync(event): pass
        receiver.on("payment.completed", handler_sync)
    else:
        async def handler_async(event): pass
        receiver.on("payment.completed", handler_async)
    headers, body = signed(data={"pad": "x" * 70000} if big else None, secret=sign_with)
    del seen[:]
    statuses = [call(receiver, headers, body)]
    if repeat:
        statuses.append(call(receiver, headers, body))
    if forged:
        statuses.append(call(receiver, dict(headers, **{"webhook-signature": "v1,AAAA"}), body))
    main = threading.main_thread().name
    return {"statuses": statuses, "where": sorted({(n, "loop" if t == main else t) for n, t in seen})}

name = sys.argv[1]
kwargs = json.loads(sys.argv[2])
if kwargs.pop("sqlite", False):
    kwargs["store"] = webhooklite.SQLiteStore(sys.argv[3])
print(json.dumps(scenario(**kwargs)))
'''


def where(tmp_path, **kwargs):
    script = tmp_path / "where.py"
    script.write_text(WHERE)
    out = subprocess.run(
        [sys.executable, str(script), "x", json.dumps(kwargs), str(tmp_path / "ids.db")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["statuses"], {tuple(pair) for pair in result["where"]}


def test_async_handlers_and_the_defaults_never_leave_the_loop(tmp_path):
    # An ordinary request, its duplicate and a forged copy: all answered without a thread.
    statuses, ran = where(tmp_path, sync=False, repeat=True, forged=True)
    assert statuses == [200, 200, 401]
    assert ran == {("check", "loop"), ("begin", "loop"), ("handler", "loop")}


def test_a_sync_handler_runs_in_a_worker_thread_the_checks_on_the_loop(tmp_path):
    statuses, ran = where(tmp_path, sync=True, repeat=True)
    assert statuses == [200, 200]
    assert ran == {("check", "loop"), ("begin", "loop"), ("handler", "webhooklite-asgi")}


@pytest.mark.parametrize(
    "why,kwargs,checked_in",
    [
        ("v1a keys: each ed25519 check is ~1 ms of pure Python", dict(secret="v1a"), "check"),
        ("a body over 64 KiB", dict(big=True), "check"),
        ("a store that does I/O", dict(sqlite=True), "sqlite_begin"),
    ],
)
def test_checks_that_may_take_long_or_block_run_in_a_thread(tmp_path, why, kwargs, checked_in):
    statuses, ran = where(tmp_path, sync=False, **kwargs)
    assert statuses == [200], why
    assert (checked_in, "webhooklite-asgi") in ran and (checked_in, "loop") not in ran, (why, ran)
    assert ("handler", "loop") in ran  # async handlers stay on the loop


def test_with_a_store_that_does_io_async_handlers_stay_on_the_loop_and_the_store_never_runs_there(tmp_path):
    statuses, ran = where(tmp_path, sync=False, sqlite=True, repeat=True)
    assert statuses == [200, 200]  # handled, then a duplicate
    assert ran == {
        ("check", "webhooklite-asgi"), ("sqlite_begin", "webhooklite-asgi"), ("sqlite_commit", "webhooklite-asgi"),
        ("handler", "loop"),
    }


def test_with_a_store_that_does_io_and_sync_handlers_the_whole_request_is_one_hop(tmp_path):
    statuses, ran = where(tmp_path, sync=True, sqlite=True)
    assert statuses == [200]
    assert ran == {
        ("check", "webhooklite-asgi"), ("sqlite_begin", "webhooklite-asgi"), ("sqlite_commit", "webhooklite-asgi"),
        ("handler", "webhooklite-asgi"),
    }


def raw(headers, body):
    return [(k.lower().encode(), v.encode()) for k, v in headers.items()] + [
        (b"content-length", str(len(body)).encode())
    ]


def cancel_when(app, scope, body, ready):
    """Start a request to ``app``, cancel it once ``ready()`` holds; return what it sent (nothing)."""

    async def go():
        exchange = ASGICall([body])
        task = asyncio.ensure_future(app(scope, exchange.receive, exchange.send))
        for _ in range(500):
            if ready():
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return exchange.sent

    return go()


def eventually(answer, want, seconds=5.0):
    """``answer()`` until its status is ``want`` (a cancelled request's id is given up in a thread)."""
    deadline = time.monotonic() + seconds
    while True:
        got = answer()
        if got[0] == want or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def test_a_request_cancelled_mid_handler_frees_its_id_once_the_handler_ends_even_after_its_loop_closed():
    receiver = webhooklite.Receiver(SECRET)
    started, release = threading.Event(), threading.Event()
    runs = []

    @receiver.on("payment.completed")
    def slow(event):
        runs.append(event.id)
        started.set()
        assert release.wait(5)

    headers, body = signed(msg_id="msg_cancelled")
    scope = asgi_scope("POST", "/", raw(headers, body))
    assert asyncio.run(cancel_when(receiver.asgi, scope, body, started.is_set)) == []  # no answer: a retry
    # The handler still runs in its thread: a retry now must not run it a second time, alongside.
    assert run_asgi(receiver.asgi, scope, [body]).answer()[0] == 409
    release.set()  # it ends after its loop has closed: nothing to tell, nothing breaks
    retry = eventually(lambda: run_asgi(receiver.asgi, scope, [body]).answer(), 200)
    assert retry[0] == 200 and json.loads(retry[2]) == {"status": "ok"}  # handled again: it was never answered
    assert runs == ["msg_cancelled", "msg_cancelled"]


class SlowBegin(webhooklite.MemoryStore):
    """A store whose begin() does I/O (a custom store: a network round trip), so it runs in a thread."""

    def __init__(self):
        super().__init__()
        self.claiming = threading.Event()

    def begin(self, id):
        self.claiming.set()
        time.sleep(0.3)
        return super().begin(id)


def test_a_request_cancelled_while_the_store_claims_its_id_gives_the_id_up():
    store = SlowBegin()
    receiver = webhooklite.Receiver(SECRET, store=store)
    runs = []

    @receiver.on("payment.completed")
    async def handled(event):
        runs.append(event.id)

    headers, body = signed(msg_id="msg_cancelled_in_begin")
    scope = asgi_scope("POST", "/", raw(headers, body))
    assert asyncio.run(cancel_when(receiver.asgi, scope, body, store.claiming.is_set)) == []
    # begin() went on and claimed the id for a request no one answers: it is given up, not left busy.
    retry = eventually(lambda: run_asgi(receiver.asgi, scope, [body]).answer(), 200)
    assert retry[0] == 200 and json.loads(retry[2]) == {"status": "ok"}
    assert runs == ["msg_cancelled_in_begin"]


def test_a_request_cancelled_while_its_commit_waits_for_a_thread_is_still_committed(tmp_path):
    from webhooklite.asgi import _threads

    receiver = webhooklite.Receiver(SECRET, store=webhooklite.SQLiteStore(str(tmp_path / "ids.db")))
    limit = _threads().max_threads
    busy, release = threading.Semaphore(0), threading.Event()
    gate = []
    runs = []

    @receiver.on("payment.completed")
    async def handled(event):
        runs.append(event.id)
        await gate[0].wait()

    @receiver.on("slow.thing")
    def slow(event):
        busy.release()
        assert release.wait(5)

    headers, body = signed(msg_id="msg_commit_waits")
    scope = asgi_scope("POST", "/", raw(headers, body))

    def start(h, b):
        exchange = ASGICall([b])
        return exchange, asyncio.ensure_future(receiver.asgi(asgi_scope("POST", "/", raw(h, b)), exchange.receive,
                                                             exchange.send))

    async def go():
        gate.append(asyncio.Event())
        exchange, task = start(headers, body)
        while not runs:  # its handler runs, on the loop
            await asyncio.sleep(0.01)
        # Then every worker thread is busy in a slow handler, and the commit after the handler waits for one.
        others = [start(*signed("slow.thing"))[1] for _ in range(limit)]
        for _ in range(limit):
            while not busy.acquire(blocking=False):
                await asyncio.sleep(0.01)
        gate[0].set()
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        await asyncio.gather(*others)
        return exchange.sent

    try:
        assert asyncio.run(go()) == []
    finally:
        release.set()
    # The handler succeeded: its id is committed anyway, so the sender's retry is a duplicate.
    retry = eventually(lambda: run_asgi(receiver.asgi, scope, [body]).answer(), 200)
    assert retry[0] == 200 and json.loads(retry[2]) == {"status": "duplicate"}
    assert runs == ["msg_commit_waits"]


def test_handlers_queued_behind_busy_threads_still_run_and_in_the_request_context():
    import contextvars

    from webhooklite.asgi import _threads

    limit = _threads().max_threads
    tag = contextvars.ContextVar("tag")
    receiver = webhooklite.Receiver(SECRET)
    all_busy = threading.Barrier(limit, timeout=5)
    lock = threading.Lock()
    seen, together = [], []

    @receiver.on("payment.completed")
    def handler(event):
        with lock:
            seen.append(tag.get())
            first = len(seen) <= limit
        if first:  # the first `limit` handlers hold every thread at once; the rest wait in the queue
            together.append(all_busy.wait())

    async def main():
        async def one(i):
            tag.set(i)
            headers, body = signed()
            exchange = ASGICall([body])
            await receiver.asgi(asgi_scope("POST", "/", raw(headers, body)), exchange.receive, exchange.send)
            return exchange.answer()[0]

        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(limit + 3))), 10)

    assert asyncio.run(main()) == [200] * (limit + 3)
    assert len(together) == limit  # as many threads as asyncio.to_thread's pool would have
    assert sorted(seen) == list(range(limit + 3))  # each handler saw its own request's context


POLICIES = r'''
import os, sys, threading
sys.path.insert(0, "tests")
import webhooklite
from conftest import SECRET, signed
from transports import asgi_scope, run_asgi
if sys.argv[1] == "idle":  # as `chrt -i 0` would start the server
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
receiver = webhooklite.Receiver(SECRET)
seen = []
receiver.on("payment.completed", lambda event: seen.append(os.sched_getscheduler(0)))
before = os.sched_getscheduler(0)
headers, body = signed()
raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
status = run_asgi(receiver.asgi, asgi_scope("POST", "/", raw), [body]).answer()[0]
print(status, before, os.sched_getscheduler(0), seen[0])
'''


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
@pytest.mark.parametrize("start, handler", [("default", "SCHED_BATCH"), ("idle", "SCHED_IDLE")])
def test_the_worker_threads_wait_their_turn_unless_the_operator_chose_a_policy(start, handler):
    # A worker woken by the loop must not preempt it (it would only find the GIL taken and sleep
    # again): the workers become SCHED_BATCH, and the loop's thread keeps its policy. A policy the
    # server was started with (chrt) is the operator's: the workers keep the one they inherit.
    # (A fresh process: its first request starts the first worker.)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", POLICIES, start], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    status, before, after, seen = map(int, out.stdout.split())
    loops = os.SCHED_IDLE if start == "idle" else os.SCHED_OTHER
    assert (status, before, after, seen) == (200, loops, loops, getattr(os, handler))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_gets_threads_of_its_own(tmp_path):
    # gunicorn's UvicornWorker forks after the app is imported, maybe after a first request.
    script = tmp_path / "forked.py"
    script.write_text(r'''
import os, sys
sys.path.insert(0, "tests")
import webhooklite
from conftest import SECRET, signed
from transports import asgi_scope, run_asgi

receiver = webhooklite.Receiver(SECRET)
receiver.on("payment.completed", lambda event: None)

def once():
    headers, body = signed()
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return run_asgi(receiver.asgi, asgi_scope("POST", "/", raw), [body]).answer()[0]

assert once() == 200  # the parent has a worker thread now, soon waiting for the next job
import time
from webhooklite.asgi import _threads
deadline = time.monotonic() + 5
while _threads()._idle < 1 and time.monotonic() < deadline:
    time.sleep(0.01)
assert _threads()._idle == 1
pid = os.fork()
if pid == 0:
    try:
        status = once()  # the thread did not survive the fork: a new one must serve
    except BaseException:
        os._exit(2)
    os._exit(0 if status == 200 else 1)
_, code = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(code) if hasattr(os, "waitstatus_to_exitcode") else code >> 8)
''')
    out = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["child", "0"], out.stdout + out.stderr
