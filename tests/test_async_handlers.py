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
