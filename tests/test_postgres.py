"""The outbox on PostgreSQL: drivers, connection factories, LISTEN/NOTIFY.

These need the test PostgreSQL (``WEBHOOKLITE_TEST_POSTGRES``) and skip, visibly, without it
(under ``WEBHOOKLITE_CI=1`` they fail instead). The behaviour shared with sqlite is tested once,
on both, in test_outbox.py and the other ``db``-parametrized tests.
"""
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import webhooklite
from conftest import need_module
from test_outbox import raw, wait_until  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


def run(code, *args, timeout=30):
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_import_webhooklite_loads_no_driver_and_a_missing_one_says_what_to_install():
    out = run(
        "import sys\n"
        "import webhooklite\n"
        "webhooklite.Outbox, webhooklite.PostgresStore, webhooklite.StorageError\n"
        "assert not any(m.split('.')[0] in ('psycopg', 'psycopg2') for m in sys.modules), 'a driver was imported'\n"
        "sys.modules['psycopg'] = sys.modules['psycopg2'] = None  # as if neither were installed\n"
        "try:\n"
        "    webhooklite.Outbox('postgresql://nobody@127.0.0.1:1/none')\n"
        "except ImportError as e:\n"
        "    print(e)\n"
        "try:\n"
        "    webhooklite.PostgresStore('postgresql://nobody@127.0.0.1:1/none')\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("pip install 'webhooklite[postgres]'") == 2 and "psycopg2" in out.stdout


def _deliver_one(outbox, raw):
    server = raw(lambda p, h, b: (200, b""))
    outbox.add_endpoint(server.base + "/")
    mid = outbox.send("ping", {"n": 1})
    assert outbox.drain(timeout=10)
    assert server.ids() == [mid]
    return outbox


def test_connect_with_a_psycopg_factory(postgres, raw):
    psycopg = need_module("psycopg", "needs psycopg 3")
    url = postgres()
    with webhooklite.Outbox(connect=lambda: psycopg.connect(url)) as outbox:
        assert outbox.backend.dialect == "postgresql" and "password" not in outbox.path
        _deliver_one(outbox, raw)


def test_connect_with_a_psycopg2_factory(postgres, raw):
    psycopg2 = need_module("psycopg2", "needs psycopg2")
    url = postgres()
    with webhooklite.Outbox(connect=lambda: psycopg2.connect(url)) as outbox:
        assert outbox.backend.dialect == "postgresql"
        _deliver_one(outbox, raw)


def test_connect_with_a_sqlite3_factory_uses_its_file(tmp_path, raw):
    path = str(tmp_path / "o.db")
    with webhooklite.Outbox(connect=lambda: sqlite3.connect(path)) as outbox:
        assert outbox.backend.dialect == "sqlite" and outbox.path == path
        _deliver_one(outbox, raw)
    with pytest.raises(ValueError, match="in-memory"):
        webhooklite.Outbox(connect=lambda: sqlite3.connect(":memory:"))
    with pytest.raises(TypeError, match="speaks"):
        webhooklite.Outbox(connect=lambda: object())
    with pytest.raises(TypeError, match="not both"):
        webhooklite.Outbox(path, connect=lambda: sqlite3.connect(path))


def test_a_password_in_the_url_is_never_shown(postgres):
    url = postgres().replace("postgres@", "postgres:s3cret@")
    with webhooklite.Outbox(url) as outbox:  # trust auth: the password is not checked
        assert "s3cret" not in outbox.path and "s3cret" not in repr(outbox)


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_a_send_wakes_idle_workers_in_other_processes_at_once(postgres, raw, driver):
    mod = need_module(driver, f"needs {driver}")
    url = postgres()
    server = raw(lambda p, h, b: (200, b""))
    # A worker that would poll only every 30 s: what wakes it is the NOTIFY of the sender's commit.
    worker = webhooklite.Outbox(connect=lambda: mod.connect(url), poll=30)
    sender = webhooklite.Outbox(url)
    try:
        sender.add_endpoint(server.base + "/")
        worker.start()
        time.sleep(0.3)  # idle: its first look found nothing
        for n in range(3):
            t = time.monotonic()
            mid = sender.send("ping", {"n": n})
            assert wait_until(lambda: mid in server.ids(), 5)
            assert time.monotonic() - t < 2, "the worker was not woken"
    finally:
        worker.close()
        sender.close()


def test_tables_live_in_the_schema_of_the_search_path(postgres, raw):
    url = postgres()
    with webhooklite.Outbox(url) as outbox:
        _deliver_one(outbox, raw)
    psycopg = need_module("psycopg", "needs psycopg 3")
    with psycopg.connect(url) as c:
        schema = c.execute("SELECT current_schema()").fetchone()[0]
        tables = {r[0] for r in c.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))}
        assert tables == {"webhooklite_schema", "webhooklite_endpoints", "webhooklite_messages",
                          "webhooklite_deliveries", "webhooklite_attempts"}
        assert c.execute("SELECT part, version FROM webhooklite_schema").fetchall() == [("outbox", 3)]


def test_a_batch_whose_transaction_postgresql_aborted_raises_instead_of_losing_its_sends(postgres):
    import urllib.parse

    from webhooklite.backends import StorageError

    psycopg = need_module("psycopg", "needs the PostgreSQL driver psycopg 3")
    url = postgres()
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query["options"] += " -cstatement_timeout=500"  # a send that waits on a lock fails after 0.5 s
    short = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote)))
    outbox = webhooklite.Outbox(short)
    outbox.add_endpoint("http://127.0.0.1:9/hooks")
    other = psycopg.connect(url)  # another process of the app, sending order-42 in its open transaction
    try:
        outbox.send("order.paid", {"n": 0}, id="order-42", conn=other)
        with pytest.raises(StorageError, match="aborted"):
            with outbox.batch():
                outbox.send("order.created", {"n": 1}, id="order-41")
                with pytest.raises(StorageError):
                    outbox.send("order.paid", {"n": 42}, id="order-42")  # waits on the other: times out
                # caught, and the block goes on: PostgreSQL has aborted the transaction by now
        assert outbox.deliveries() == []  # all or none, and the caller was told it was none
        other.rollback()
        assert outbox.send("order.created", {"n": 1}, id="order-41") == "order-41"  # the connection serves on
        assert [d.message_id for d in outbox.deliveries()] == ["order-41"]
    finally:
        other.close()
        outbox.close()
