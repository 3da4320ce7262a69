"""The first request after a PostgreSQL restart: the receiver's dedupe store and its inbox find their
idle connection cut only when they use it, and that must not cost the delivery (a 500 or a 503, and
the sender's retry minutes later). A server still down is still an error, at once.
"""
import http.client
import time
import urllib.parse

import pytest

import webhooklite
from conftest import SECRET, signed


def deliver(server, msg_id):
    headers, body = signed(msg_id=msg_id)
    conn = http.client.HTTPConnection(server.host, server.port, timeout=20)
    try:
        conn.request("POST", "/", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_the_dedupe_store_answers_the_first_delivery_after_a_restart(private_postgres):
    store = webhooklite.PostgresStore(private_postgres.url)
    receiver = webhooklite.Receiver(SECRET, store=store)
    handled = []
    receiver.on("payment.completed", lambda event: handled.append(event.id))
    try:
        with receiver.start(port=0) as server:
            assert deliver(server, "msg_before")[0] == 200
            private_postgres.restart()  # the store's connection, idle, is cut; nothing says so until it is used
            assert deliver(server, "msg_after")[0] == 200
            assert deliver(server, "msg_after")[0] == 200 and handled == ["msg_before", "msg_after"]  # a duplicate
            private_postgres.stop()
            status, body = deliver(server, "msg_during")
            assert status == 500 and b"msg_during" not in body  # down is down: the sender retries later
    finally:
        store.close()


def test_the_inbox_stores_the_first_delivery_after_a_restart(private_postgres):
    inbox = webhooklite.Inbox(private_postgres.url, autostart=False)
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    receiver.on("payment.completed", lambda event: None)
    try:
        with receiver.start(port=0) as server:
            assert deliver(server, "msg_before")[0] == 202
            private_postgres.restart()
            assert deliver(server, "msg_after")[0] == 202
            assert deliver(server, "msg_after")[0] == 200  # stored: a duplicate
            assert inbox.event("msg_after").state == "pending"
            private_postgres.restart()
            assert inbox.event("msg_before").state == "pending"  # a read after a restart, too
            private_postgres.stop()
            assert deliver(server, "msg_during")[0] == 503
            with pytest.raises(webhooklite.StorageError):
                inbox.event("msg_before")
    finally:
        inbox.close()


def test_a_begin_run_again_with_its_own_token_still_claims(postgres):
    # What the store's retry relies on: the connection was cut as the claim's answer came back, so
    # the same statement runs once more; it must say "new" again, not "busy" (our own mark).
    store = webhooklite.PostgresStore(postgres())
    try:
        begin = dict(store._limits(), id="msg_1", token="token_a")
        assert store._run(store._q["begin"], begin, fetch=True) == [("token_a",)]
        assert store._run(store._q["begin"], begin, fetch=True) == [("token_a",)]
        assert store._run(store._q["begin"], dict(begin, token="token_b"), fetch=True) == []  # another's: busy
        assert store.begin("msg_1") == "busy"
    finally:
        store.close()


def test_a_statement_that_timed_out_is_not_run_again(postgres):
    # Only a connection that is really gone is worth a second try: a statement_timeout (a lock held
    # by a migration, say) is an error of the statement, and trying again would double the wait.
    import psycopg

    url = postgres()
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query["options"] += " -cstatement_timeout=500"  # beside the test's own search_path
    query_text = urllib.parse.urlencode(query, quote_via=urllib.parse.quote)  # %20, not +: libpq reads no +
    store = webhooklite.PostgresStore(parts._replace(query=query_text).geturl())
    try:
        assert store.begin("msg_warm") == "new"  # the table exists; the connection is open
        with psycopg.connect(url, connect_timeout=5) as locker:
            locker.execute("LOCK TABLE webhooklite_handled IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(webhooklite.StorageError):
                store.begin("msg_1")
            took = time.monotonic() - started
        assert took < 0.9, f"the timed-out statement ran twice ({took:.2f} s for a 0.5 s statement_timeout)"
        assert store.begin("msg_1") == "new"  # the lock gone, the store works again
    finally:
        store.close()
