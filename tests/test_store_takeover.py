"""A claim taken over after ``busy_for``, end to end: the first request's late failure must not free
the id while the request that took it over is still running the handlers.

The store's own tests (test_sqlite_store.py, test_pgstore.py) call begin/abort directly, each store
object standing for a process. Here two requests in one receiving process hold claims on one id,
which only the receiver can tell apart: the first request's abort must remove its own claim, not
the second's (which would let a third request run the handlers beside the second).
"""
import asyncio
import http.client
import threading
import time

import pytest

import transports
import webhooklite
from conftest import SECRET, signed

BUSY_FOR = 0.4


def socket_calls(receiver):
    server = receiver.start(port=0)

    def call(headers, body):
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            conn.request("POST", "/", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    return call, server.stop


def asgi_calls(receiver):
    """``receiver.asgi`` on an event loop of its own thread, each call a request among the others."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def call(headers, body):
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw.append((b"content-length", str(len(body)).encode("ascii")))
        exchange = transports.ASGICall([body])

        async def go():
            await asyncio.wait_for(receiver.asgi(transports.asgi_scope("POST", "/", raw), exchange.receive,
                                                 exchange.send), 10)

        asyncio.run_coroutine_threadsafe(go(), loop).result(15)
        return exchange.answer()[0]

    def stop():
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()

    return call, stop


def sqlite_store(tmp_path, postgres):
    return webhooklite.SQLiteStore(tmp_path / "seen.db", busy_for=BUSY_FOR)


def postgres_store(tmp_path, postgres):
    return webhooklite.PostgresStore(postgres(), busy_for=BUSY_FOR)


@pytest.mark.parametrize(
    "make_store, calls, async_handler",
    [
        (postgres_store, socket_calls, False),
        (postgres_store, asgi_calls, False),
        (postgres_store, asgi_calls, True),
        (sqlite_store, socket_calls, False),
        (sqlite_store, asgi_calls, False),
        (sqlite_store, asgi_calls, True),  # begin and abort on two of the ASGI app's worker threads
    ],
    ids=["postgres-socket", "postgres-asgi", "postgres-asgi-async", "sqlite-socket", "sqlite-asgi",
         "sqlite-asgi-async"],
)
def test_a_late_failure_does_not_free_an_id_another_request_took_over(tmp_path, request, make_store, calls,
                                                                     async_handler):
    postgres = request.getfixturevalue("postgres") if make_store is postgres_store else None
    store = make_store(tmp_path, postgres)
    receiver = webhooklite.Receiver(SECRET, store=store)
    runs, second_running, third_answered = [], threading.Event(), threading.Event()

    def work(event):
        runs.append(time.monotonic())
        if len(runs) == 1:  # the first delivery: outlives busy_for, then fails
            assert second_running.wait(10)
            raise RuntimeError("the first attempt failed, late")
        if len(runs) == 2:  # the retry that took the id over: still running when the third comes
            second_running.set()
            assert third_answered.wait(10)

    if async_handler:
        @receiver.on("payment.completed")
        async def handled(event):
            await asyncio.get_running_loop().run_in_executor(None, work, event)
    else:
        receiver.on("payment.completed", work)

    call, stop = calls(receiver)
    headers, body = signed(msg_id="msg_taken_over")
    answers = {}
    try:
        first = threading.Thread(target=lambda: answers.__setitem__("first", call(headers, body)))
        first.start()
        deadline = time.monotonic() + 5
        while not runs and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(BUSY_FOR + 0.1)  # the first claim is now abandoned, as far as the store can tell
        second = threading.Thread(target=lambda: answers.__setitem__("second", call(headers, body)))
        second.start()
        first.join(10)
        assert answers.get("first") == 500  # its handler failed: the id was given up...
        # ...but the second request still holds it: the sender's next retry is told to come back.
        answers["third"] = call(headers, body)
        third_answered.set()
        second.join(10)
        answers["fourth"] = call(headers, body)
    finally:
        third_answered.set()
        second_running.set()
        stop()
        store.close()
    assert answers == {"first": 500, "second": 200, "third": 409, "fourth": 200}
    assert len(runs) == 2  # never a third run beside the second



@pytest.mark.parametrize("make_store", [sqlite_store, postgres_store], ids=["sqlite", "postgres"])
def test_two_requests_claims_made_on_one_thread_are_told_apart_by_their_holder(tmp_path, request, make_store):
    # receiver.asgi may run two requests' begin() on one worker thread, and their abort() on another:
    # the thread cannot say whose claim it is, the holder (the request's Event) does.
    postgres = request.getfixturevalue("postgres") if make_store is postgres_store else None
    store = make_store(tmp_path, postgres)
    first, second, third = object(), object(), object()
    try:
        assert store.begin("msg_1", holder=first) == "new"
        time.sleep(BUSY_FOR + 0.1)
        assert store.begin("msg_1", holder=second) == "new"  # taken over
        store.abort("msg_1", holder=first)  # late: removes nothing of the second's
        assert store.begin("msg_1", holder=third) == "busy"
        store.abort("msg_1", holder=third)  # held nothing: changes nothing
        assert store.begin("msg_1") == "busy"
        store.commit("msg_1", holder=second)
        assert store.begin("msg_1") == "done"
        assert store.begin("msg_2", holder=first) == "new"
        store.abort("msg_2", holder=first)
        assert store.begin("msg_2", holder=second) == "new"  # given up: handled again
    finally:
        store.close()


class CountingStore(webhooklite.SQLiteStore):
    """A subclass that counts claims, with the documented three-method signature of its own."""

    begins = 0

    def begin(self, id):
        CountingStore.begins += 1
        return super().begin(id)


class Wrapped:
    """A proxy in front of a store: its own three methods, anything else passed on (takes_holder too)."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def begin(self, id):
        return self.inner.begin(id)

    def commit(self, id):
        self.inner.commit(id)

    def abort(self, id):
        self.inner.abort(id)


@pytest.mark.parametrize("kind", ["subclass", "wrapper"])
def test_a_subclass_or_a_wrapper_of_a_store_with_three_plain_methods_is_called_without_holder(tmp_path, kind):
    inner = CountingStore(tmp_path / "seen.db") if kind == "subclass" else webhooklite.SQLiteStore(tmp_path / "seen.db")
    store = inner if kind == "subclass" else Wrapped(inner)
    receiver = webhooklite.Receiver(SECRET, store=store)
    runs = []
    receiver.on("payment.completed", runs.append)
    call, stop = socket_calls(receiver)
    try:
        headers, body = signed(msg_id="msg_once")
        assert [call(headers, body), call(headers, body)] == [200, 200]  # handled, then a duplicate
    finally:
        stop()
        inner.close()
    assert len(runs) == 1


class HolderStore:
    """A store of one's own that opts in as docs/receiving.md says: a claim is its holder's alone."""

    takes_holder = True

    def __init__(self):
        self.claims, self.done, self.calls = {}, set(), []

    def begin(self, id, holder=None):
        self.calls.append(("begin", holder is not None))
        if id in self.done:
            return "done"
        if id in self.claims:
            return "busy"
        self.claims[id] = holder
        return "new"

    def commit(self, id, holder=None):
        self.calls.append(("commit", holder is not None))
        if self.claims.get(id) is holder:
            del self.claims[id]
            self.done.add(id)

    def abort(self, id, holder=None):
        self.calls.append(("abort", holder is not None))
        if self.claims.get(id) is holder:
            del self.claims[id]


@pytest.mark.parametrize("calls", [socket_calls, asgi_calls], ids=["socket", "asgi"])
def test_a_store_that_takes_holder_gets_it_in_every_call_an_event_with_no_handler_too(calls):
    store = HolderStore()
    receiver = webhooklite.Receiver(SECRET, store=store)
    receiver.on("payment.completed", lambda event: None)
    call, stop = calls(receiver)
    try:
        for event_type in ("payment.completed", "refund.created"):  # the second has no handler: "ignored"
            headers, body = signed(event_type, msg_id="msg_" + event_type)
            assert [call(headers, body), call(headers, body)] == [200, 200]  # then a duplicate, not 409
    finally:
        stop()
    assert store.calls == [("begin", True), ("commit", True), ("begin", True)] * 2


@pytest.mark.parametrize("make_store", [sqlite_store, postgres_store], ids=["sqlite", "postgres"])
def test_a_late_success_after_a_takeover_marks_the_id_done_whatever_the_second_run_does(tmp_path, request,
                                                                                          make_store):
    # The first run outlived busy_for and the retry took the id over; then the first one succeeded.
    # The handlers did succeed: the id is done, and the second run's failure must not free it again
    # (a third delivery would run them once more). Both stores agree.
    postgres = request.getfixturevalue("postgres") if make_store is postgres_store else None
    store = make_store(tmp_path, postgres)
    first, second = object(), object()
    try:
        assert store.begin("msg_1", holder=first) == "new"
        time.sleep(BUSY_FOR + 0.1)
        assert store.begin("msg_1", holder=second) == "new"
        store.commit("msg_1", holder=first)
        assert store.begin("msg_1") == "done"
        store.abort("msg_1", holder=second)
        assert store.begin("msg_1") == "done"
    finally:
        store.close()
