"""``async def`` handlers: awaited to completion under the threaded server and WSGI (a loop of the
receiver's own), and on the event loop under ASGI."""
import asyncio
import threading

import pytest

import webhooklite
from conftest import SECRET, signed


def make_receiver(seen):
    receiver = webhooklite.Receiver(SECRET)

    @receiver.on("payment.completed")
    async def notify(event):
        await asyncio.sleep(0.01)  # really suspends: a coroutine that is never awaited would not get here
        seen.append(("async", event.id, threading.current_thread().name))

    @receiver.on("payment.*")
    def audit(event):
        seen.append(("sync", event.id, threading.current_thread().name))

    @receiver.on("refund.created")
    async def fails(event):
        await asyncio.sleep(0)
        raise RuntimeError("refund service down")

    return receiver


def test_async_and_sync_handlers_run_in_order_on_every_transport(transport):
    seen = []
    with transport(make_receiver(seen)) as call:
        status, _, body = call("POST", "/", *signed(msg_id="msg_a1"))
        assert status == 200 and b'"ok"' in body
        assert [(kind, eid) for kind, eid, _ in seen] == [("async", "msg_a1"), ("sync", "msg_a1")]
        # A duplicate runs neither.
        assert b'"duplicate"' in call("POST", "/", *signed(msg_id="msg_a1"))[2]
        assert len(seen) == 2
        # An async handler that raises is a 500, so the sender retries.
        assert call("POST", "/", *signed("refund.created", msg_id="msg_r1"))[0] == 500


def test_under_the_threaded_server_one_private_loop_serves_every_thread():
    seen = []
    receiver = make_receiver(seen)
    with receiver.start() as server, webhooklite.Sender(server.url, SECRET) as sender:
        results = []
        threads = [
            threading.Thread(target=lambda i=i: results.append(sender.send("payment.completed", {"n": i}).ok))
            for i in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert results == [True] * 8
    loops = {name for kind, _, name in seen if kind == "async"}
    assert loops == {"webhooklite-async"}


def test_a_handler_returning_an_awaitable_is_awaited():
    seen = []
    receiver = webhooklite.Receiver(SECRET)

    async def later(event):
        seen.append(event.id)

    receiver.on("*", lambda event: later(event))  # e.g. a partial or a lambda around an async function
    assert receiver.handle("POST", "/", *signed(msg_id="msg_l1")).status == 200
    assert seen == ["msg_l1"]


APP = '''
import asyncio, os, threading, webhooklite
receiver = webhooklite.Receiver(os.environ["WEBHOOK_SECRET"])
log = open(os.environ["RUNS"], "a", buffering=1)

@receiver.on("payment.completed")
async def slow(event):
    await asyncio.sleep(0.4)  # on the loop: twenty of these at once take 0.4 s, not 8
    log.write(f"async {event.id} {threading.current_thread() is threading.main_thread()}\\n")

@receiver.on("payment.*")
def audit(event):
    log.write(f"sync {event.id} {threading.current_thread() is threading.main_thread()}\\n")

app = receiver.asgi
'''


def test_async_handlers_run_on_uvicorns_loop(tmp_path):
    pytest.importorskip("uvicorn", reason="uvicorn is not installed (pip install -r tests/requirements-ci.txt)")
    import os
    import socket
    import subprocess
    import sys
    import time
    from concurrent.futures import ThreadPoolExecutor

    (tmp_path / "asyncapp.py").write_text(APP)
    runs = tmp_path / "runs.txt"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, WEBHOOK_SECRET=SECRET, RUNS=str(runs), PYTHONPATH=f"{tmp_path}{os.pathsep}{os.getcwd()}")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "asyncapp:app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, server.stderr.read().decode()
                time.sleep(0.1)
        start = time.monotonic()
        with webhooklite.Sender(url, SECRET, timeout=10) as sender, ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda i: sender.send("payment.completed", {"n": i}, id=f"msg_{i}"), range(20)))
        took = time.monotonic() - start
    finally:
        server.terminate()
        server.wait(10)
    assert all(d.ok for d in results), [d.error for d in results]
    lines = runs.read_text().split()
    entries = [tuple(lines[i:i + 3]) for i in range(0, len(lines), 3)]
    assert sorted(e[1] for e in entries if e[0] == "async") == sorted(f"msg_{i}" for i in range(20))
    assert {e[2] for e in entries if e[0] == "async"} == {"True"}  # on uvicorn's loop, in its main thread
    assert {e[2] for e in entries if e[0] == "sync"} == {"False"}  # a sync handler keeps its thread
    assert took < 4.0, took  # twenty 0.4 s handlers at once; one after another would take 8 s
