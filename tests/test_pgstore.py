"""PostgresStore: SQLiteStore's begin/commit/abort contract on PostgreSQL, for receivers on many hosts.

Each store object has its own connection: two of them are two hosts as far as the database knows.
"""
import threading
import time

import pytest

import webhooklite
from conftest import need_module


@pytest.fixture
def store(postgres):
    url = postgres()
    made = []

    def make(**options):
        s = webhooklite.PostgresStore(url, **options)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def test_begin_commit_abort(store):
    a, b = store(), store()
    assert a.begin("msg_1") == "new"
    assert b.begin("msg_1") == "busy"  # being handled on the other host
    a.abort("msg_1")
    assert b.begin("msg_1") == "new"
    b.commit("msg_1")
    assert a.begin("msg_1") == b.begin("msg_1") == "done"
    assert len(a) == 1
    a.commit("msg_2")  # commit without begin still records it
    assert b.begin("msg_2") == "done"


def test_exactly_one_of_many_concurrent_begins_is_new(store):
    stores = [store() for _ in range(4)]
    answers = []
    barrier = threading.Barrier(8)

    def go(s):
        barrier.wait(5)
        answers.append(s.begin("msg_race"))

    threads = [threading.Thread(target=go, args=(stores[i % 4],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(answers) == ["busy"] * 7 + ["new"]


def test_a_late_abort_cannot_free_a_claim_that_another_host_took_over(store):
    a, b, c = store(busy_for=0.2), store(busy_for=0.2), store(busy_for=0.2)
    assert a.begin("msg_slow") == "new"
    time.sleep(0.4)  # a's handler outlives busy_for: its mark counts as abandoned
    assert b.begin("msg_slow") == "new"  # taken over
    a.abort("msg_slow")  # a's handler finally fails: a late abort
    assert c.begin("msg_slow") == "busy"  # b's claim stands
    b.commit("msg_slow")
    assert c.begin("msg_slow") == "done"


def test_done_ids_expire_after_keep_and_purge_removes_expired_and_abandoned_rows(store):
    s = store(busy_for=0.2, keep=0.3)
    s.commit("msg_old")
    assert s.begin("msg_abandoned") == "new"  # its process dies: never committed nor aborted
    assert s.begin("msg_old") == "done"
    time.sleep(0.45)
    assert len(s) == 0  # forgotten after keep...
    assert s.purge() == 2  # ...and both rows go
    assert s.begin("msg_old") == "new"


def test_two_receivers_sharing_a_store_run_the_handler_once(store):
    secret = webhooklite.generate_secret()
    runs = []
    receivers = []
    for _ in range(2):
        r = webhooklite.Receiver(secret, store=store())
        r.on("*", lambda e: runs.append(e.id))
        receivers.append(r)
    with receivers[0].start() as one, receivers[1].start() as two:
        for server in (one, two, one):  # a retry reaches the other host
            with webhooklite.Sender(server.url, secret) as sender:
                assert sender.send("ping", {}, id="msg_shared").ok
    assert runs == ["msg_shared"]


def test_a_connect_function_and_the_lazy_export(postgres):
    psycopg2 = need_module("psycopg2", "needs psycopg2")
    url = postgres()
    s = webhooklite.PostgresStore(lambda: psycopg2.connect(url))
    assert s.begin("msg_x") == "new" and "PostgresStore(" in repr(s)
    s.commit("msg_x")
    s.close()
    assert webhooklite.PostgresStore(url).begin("msg_x") == "done"
    with pytest.raises(TypeError):
        webhooklite.PostgresStore(42)
