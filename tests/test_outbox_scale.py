"""Issue 12: your own database (webhooklite_* tables, a 0.1 file migrated in place), transactional
send, tenants and ordering keys. Tests taking ``db`` run on sqlite and on PostgreSQL."""
import collections
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import webhooklite
from conftest import DB, SECRET, need_module
from test_outbox import raw, wait_until  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
OUTBOX_DOCS = (ROOT / "docs" / "outbox.md").read_text(encoding="utf-8")


# -- your own database --------------------------------------------------------------------------


def test_a_0_1_file_migrates_in_place_and_delivers_its_pending_messages(raw, tmp_path):
    signed = webhooklite.Receiver(SECRET)
    github = webhooklite.Receiver("It's a Secret", scheme="github")
    runs = collections.Counter()
    for r, name in ((signed, "signed"), (github, "github")):
        r.on("*", lambda e, name=name: runs.update([(name, e.id)]))

    def decide(path, headers, body):
        receiver = {"/signed": signed, "/github": github}.get(path)
        if receiver is None:
            return 200, b""
        answer = receiver.handle("POST", "/", headers, body)  # verifies the signature
        return answer.status, answer.body

    server = raw(decide)
    path = str(tmp_path / "from-0.1.db")
    dump = (Path(__file__).parent / "data" / "outbox-0.1.sql").read_text().replace("{BASE}", server.base)
    conn = sqlite3.connect(path)
    conn.executescript(dump)
    conn.close()
    assert {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == {
        "endpoints", "messages", "deliveries", "attempts"}

    with webhooklite.Outbox(path, schedule=(0,)) as outbox:
        c = sqlite3.connect(path)
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"webhooklite_schema", "webhooklite_endpoints", "webhooklite_messages",
                          "webhooklite_deliveries", "webhooklite_attempts",
                          "sqlite_sequence"}  # SQLite's own: where AUTOINCREMENT keeps each table's last id
        assert c.execute("SELECT part, version FROM webhooklite_schema").fetchall() == [("outbox", 4)]
        assert c.execute("PRAGMA user_version").fetchone() == (2,)  # a 0.1 process now refuses the file
        c.close()
        eps = {e.url.rsplit("/", 1)[1]: e for e in outbox.endpoints()}
        assert (eps["github"].scheme, eps["github"].headers, eps["github"].timeout) == ("github", {"X-Team": "store"}, 5.0)
        assert (eps["broken"].enabled, eps["broken"].disabled_reason) == (False, "broken for good")
        assert [(s["pending"], s["delivered"], s["dead"]) for s in outbox.stats().values()] == [
            (3, 2, 0), (3, 1, 0), (0, 0, 2)]
        assert outbox.drain(timeout=10)
        pending = {f"msg_pending_{n}" for n in range(3)}
        assert set(runs) == {(name, mid) for name in ("signed", "github") for mid in pending}  # signed as before
        assert set(runs.values()) == {1}
        (dead, _) = outbox.dead()
        assert [a.status for a in outbox.attempts(dead.id)] == [500]  # the attempt log came along
        outbox.enable_endpoint(eps["broken"].id)
        outbox.retry(dead.id)
        assert outbox.drain(timeout=10) and outbox.delivery(dead.id).state == "delivered"
    with webhooklite.Outbox(path) as outbox:  # opened again: nothing to migrate, nothing lost
        assert sum(s["delivered"] for s in outbox.stats().values()) == 10


def test_a_file_from_a_newer_webhooklite_is_refused(db):
    webhooklite.Outbox(db.target).close()
    conn = db.connect()
    conn.execute("UPDATE webhooklite_schema SET version = 99 WHERE part = 'outbox'")
    conn.commit()
    conn.close()
    with pytest.raises(ValueError, match="newer webhooklite"):
        webhooklite.Outbox(db.target)


# -- transactional send ---------------------------------------------------------------------------

ORDERS = {"sqlite": "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)",
          "postgres": "CREATE TABLE orders (id serial PRIMARY KEY, item text)"}


def test_send_with_conn_exists_if_and_only_if_the_callers_transaction_commits(raw, db):
    server = raw(lambda p, h, b: (200, b""))
    with webhooklite.Outbox(db.target, poll=0.05) as outbox:
        outbox.add_endpoint(server.base + "/")
        conn = db.connect()
        conn.execute(ORDERS[db.kind])
        conn.commit()
        outbox.start()  # workers running all along: they must not see an uncommitted message
        if db.kind == "sqlite":
            conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO orders (item) VALUES ('Blue T-Shirt')")
        outbox.send("order.created", {"item": "Blue T-Shirt"}, conn=conn)
        time.sleep(0.3)
        assert server.requests == [] and outbox.deliveries() == []  # not committed: not there
        conn.rollback()
        assert outbox.drain(timeout=2) and server.requests == []  # rolled back: never sent

        if db.kind == "sqlite":
            conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO orders (item) VALUES ('Red Scarf')")
        mid = outbox.send("order.created", {"item": "Red Scarf"}, conn=conn)
        time.sleep(0.2)
        assert server.requests == []
        conn.commit()
        assert wait_until(lambda: server.ids() == [mid], 5)  # committed: delivered
        assert db.rows("SELECT item FROM orders") == [("Red Scarf",)]
        conn.close()


def test_send_with_conn_refuses_what_would_not_be_atomic(db, tmp_path):
    with webhooklite.Outbox(db.target) as outbox:
        outbox.add_endpoint("http://127.0.0.1:9/")
        if db.kind == "sqlite":
            auto = sqlite3.connect(db.target, isolation_level=None)  # autocommit
            other = sqlite3.connect(str(tmp_path / "elsewhere.db"))
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(ValueError, match="not to the outbox's file"):
                outbox.send("x", conn=other)
            other.close()
        else:
            auto = db.connect()
            auto.autocommit = True
            with pytest.raises(ValueError, match="sqlite"):
                webhooklite.Outbox(str(tmp_path / "o.db")).send("x", conn=db.connect())
        with pytest.raises(ValueError, match="autocommit"):
            outbox.send("x", conn=auto)
        with pytest.raises(ValueError, match="speaks|psycopg|sqlite3"):
            outbox.send("x", conn=object())
        auto.close()
        assert outbox.deliveries() == []


def test_send_with_a_psycopg2_connection(raw, postgres):
    psycopg2 = need_module("psycopg2", "needs psycopg2")
    url = postgres()
    server = raw(lambda p, h, b: (200, b""))
    with webhooklite.Outbox(url) as outbox:  # the outbox itself on psycopg 3
        outbox.add_endpoint(server.base + "/")
        conn = psycopg2.connect(url)
        with conn.cursor() as c:
            c.execute(ORDERS["postgres"])
            c.execute("INSERT INTO orders (item) VALUES ('Blue T-Shirt')")
        outbox.send("order.created", {"n": 1}, conn=conn)
        conn.rollback()
        with conn.cursor() as c:
            c.execute(ORDERS["postgres"])
        mid = outbox.send("order.created", {"n": 2}, conn=conn)
        conn.commit()
        conn.close()
        assert outbox.drain(timeout=10) and server.ids() == [mid]


# docs/outbox.md's recipes (one ```python recipes block), run as typed after a preamble
# that makes what they assume (DATABASE_URL, outbox, engine, an orders table).
def _recipes():
    """docs/outbox.md's one block of recipes, cut at its "# psycopg", "# Django", "# SQLAlchemy" headers."""
    block = re.search(r"```python recipes\n(.*?)```", OUTBOX_DOCS, flags=re.S).group(1)
    parts = re.split(r"^# (psycopg|Django|SQLAlchemy)\b[^\n]*\n", block, flags=re.M)
    return {name.lower(): code.strip() + "\n" for name, code in zip(parts[1::2], parts[2::2])}


RECIPES = _recipes()

PREAMBLE = """
import os, sys
import webhooklite
KIND, TARGET = sys.argv[1], sys.argv[2]
DATABASE_URL = OUTBOX_DB = TARGET
outbox = webhooklite.Outbox(TARGET)
outbox.add_endpoint("http://127.0.0.1:9/hooks")
"""

SETUP = {
    "psycopg": "",
    "django": """
import urllib.parse
import django
from django.conf import settings
if KIND == "sqlite":
    db = {"ENGINE": "django.db.backends.sqlite3", "NAME": TARGET}
else:
    u = urllib.parse.urlsplit(TARGET)
    q = dict(urllib.parse.parse_qsl(u.query))
    db = {"ENGINE": "django.db.backends.postgresql", "NAME": u.path[1:], "USER": u.username, "HOST": u.hostname,
          "PORT": u.port, "OPTIONS": {"options": q["options"]}}
settings.configure(DATABASES={"default": db})
django.setup()
""",
    "sqlalchemy": """
import sqlalchemy as sa
engine = sa.create_engine(("sqlite:///" + TARGET) if KIND == "sqlite" else TARGET.replace("postgresql://", "postgresql+psycopg://"))
""",
}

CHECK = {
    "psycopg": "",
    "django": """
place_order("Red Scarf")
try:
    with transaction.atomic():
        place_order("never")
        raise RuntimeError("rolled back")
except RuntimeError:
    pass
""",
    "sqlalchemy": "",
}

CHECK_ALL = """
events = [(d.event, __import__("json").loads(d.body)["item"]) for d in outbox.deliveries()]
print(sorted(events))
"""


def _run_recipe(db, recipe):
    need_module(recipe, f"docs/outbox.md's {recipe} recipe")
    if db.kind == "postgres":
        need_module("psycopg", "the recipes on PostgreSQL use psycopg 3")
    webhooklite.Outbox(db.target).close()  # the tables, so the app's table can live beside them
    conn = db.connect()
    conn.execute(ORDERS[db.kind])
    conn.commit()
    conn.close()
    code = PREAMBLE + SETUP[recipe] + RECIPES[recipe] + CHECK[recipe] + CHECK_ALL
    out = subprocess.run([sys.executable, "-c", code, db.kind, db.target], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr
    expected = [("order.created", "Red Scarf" if recipe == "django" else "Blue T-Shirt")]  # and not "never"
    assert out.stdout.strip() == str(sorted(expected)), out.stderr
    assert sorted(r[0] for r in db.rows("SELECT item FROM orders")) == sorted(e[1] for e in expected)


@pytest.mark.parametrize("recipe", ["django", "sqlalchemy"])
def test_the_readmes_framework_recipes_run_as_typed(db, recipe):
    _run_recipe(db, recipe)


def test_the_readmes_psycopg_recipe_runs_as_typed(postgres, tmp_path):
    _run_recipe(DB("postgres", tmp_path, postgres), "psycopg")


# -- tenants ---------------------------------------------------------------------------------------


def test_a_tenants_messages_reach_only_that_tenants_endpoints(raw, db):
    server = raw(lambda p, h, b: (200, b""))
    with webhooklite.Outbox(db.target) as outbox:
        url = server.base + "/shared"  # the same URL registered by two tenants: two endpoints
        acme = outbox.add_endpoint(url, tenant="acme", events=["invoice.*"])
        globex = outbox.add_endpoint(url, tenant="globex")
        ours = outbox.add_endpoint(server.base + "/ops")
        assert len({acme, globex, ours}) == 3
        assert outbox.add_endpoint(url, tenant="acme", headers={"X-T": "acme"}) == acme  # (tenant, url) is the key
        by_id = {e.id: e for e in outbox.endpoints()}
        assert (by_id[acme].tenant, by_id[globex].tenant, by_id[ours].tenant) == ("acme", "globex", None)
        assert by_id[acme].events == ("invoice.*",)  # kept: only headers were passed again

        a = outbox.send("invoice.paid", {"n": 1}, tenant="acme")
        g = outbox.send("invoice.paid", {"n": 2}, tenant="globex")
        o = outbox.send("invoice.paid", {"n": 3})
        outbox.send("invoice.paid", {"n": 4}, tenant="initech")  # nobody's: a warning, nothing stored
        assert outbox.drain(timeout=10)
        assert {d.message_id: d.endpoint_id for d in outbox.deliveries()} == {a: acme, g: globex, o: ours}
        assert outbox.deliveries(message_id=a)[0].tenant == "acme"
        assert sorted(server.ids("/shared")) == sorted([a, g]) and server.ids("/ops") == [o]
        assert outbox.stats()[acme]["tenant"] == "acme" and "tenant" not in outbox.stats()[ours]
        with pytest.raises(ValueError, match="several endpoints"):
            outbox.disable_endpoint(url)  # ambiguous: by id instead
        outbox.disable_endpoint(globex)
        with pytest.raises(ValueError, match="tenant"):
            outbox.send("x", tenant="")


# -- ordering keys ---------------------------------------------------------------------------------


class OrderWatch:
    """A receiver's view of ordering: arrival order per key, and whether one key was ever in flight twice."""

    def __init__(self, fail=lambda data, n: False, delay=0.01):
        self.lock = threading.Lock()
        self.order = collections.defaultdict(list)
        self.busy = collections.Counter()
        self.overlaps = []
        self.tries = collections.Counter()
        self.fail, self.delay = fail, delay

    def __call__(self, path, headers, body):
        data = __import__("json").loads(body)
        key = data.get("key")
        with self.lock:
            self.tries[data["n"]] += 1
            n = self.tries[data["n"]]
            if key is not None:
                if self.busy[key]:
                    self.overlaps.append(key)
                self.busy[key] += 1
        time.sleep(self.delay)
        failed = self.fail(data, n)
        with self.lock:
            if key is not None:
                self.busy[key] -= 1
                if not failed:
                    self.order[key].append(data["n"])
        return (500, b"") if failed else (200, b"")


def test_deliveries_sharing_a_key_go_one_at_a_time_in_send_order(raw, db):
    watch = OrderWatch(delay=0.1)  # long enough that a loaded box's overheads cannot pass for serial order
    server = raw(watch)
    with webhooklite.Outbox(db.target, workers=8, per_endpoint=8, schedule=(0, 0.05, 0.1)) as outbox:
        outbox.add_endpoint(server.base + "/")
        sent = collections.defaultdict(list)
        n = 0
        for round_ in range(8):
            for key in ("k1", "k2", "k3", None, None):
                outbox.send("order.updated", {"n": n, "key": key}, key=key)
                if key:
                    sent[key].append(n)
                n += 1
        t = time.monotonic()
        assert outbox.drain(timeout=20)
        elapsed = time.monotonic() - t
    assert watch.overlaps == [], "two deliveries with one key were in flight at once"
    assert dict(watch.order) == dict(sent)  # in send order, per key
    # Keys hold only themselves up: 8 one-at-a-time deliveries per key in parallel (0.8 s), where the
    # 24 keyed ones in a row would take 2.4 s at least.
    assert elapsed < 24 * watch.delay, elapsed


def test_a_failing_head_blocks_its_key_until_retried_or_dead_and_nothing_else(raw, db):
    watch = OrderWatch(fail=lambda data, n: data["n"] == 0 and data.get("fail", True))
    server = raw(watch)
    with webhooklite.Outbox(db.target, schedule=(0, 3600), poll=0.05) as outbox:
        outbox.add_endpoint(server.base + "/")
        head = outbox.send("order.created", {"n": 0, "key": "o-1"}, key="o-1")
        outbox.send("order.paid", {"n": 1, "key": "o-1"}, key="o-1")
        outbox.send("other", {"n": 2, "key": "o-2"}, key="o-2")
        assert outbox.drain(due_only=True, timeout=10)
        assert dict(watch.order) == {"o-2": [2]}  # o-1's head failed and is due in an hour: o-1 waits
        assert watch.tries[1] == 0
        (d,) = outbox.deliveries(message_id=head)
        assert d.state == "pending" and d.next_at > time.time() + 2500  # an hour, less up to 20% jitter
        watch.fail = lambda data, n: False
        outbox.retry(d.id)  # unblock: the head is attempted now, then the next follows
        assert outbox.drain(timeout=10)
        assert watch.order["o-1"] == [0, 1]

        # A head that goes dead no longer blocks its key.
        watch.fail = lambda data, n: data["n"] == 10
        with webhooklite.Outbox(db.new(), schedule=(0,)) as other:
            other.add_endpoint(server.base + "/")
            for n in (10, 11, 12):
                other.send("step", {"n": n, "key": "o-3"}, key="o-3")
            assert other.drain(timeout=10)
            assert [d.state for d in sorted(other.deliveries(), key=lambda d: d.id)] == ["dead", "delivered", "delivered"]
        assert watch.order["o-3"] == [11, 12]
