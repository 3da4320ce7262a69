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
from conftest import SECRET, need_module
from test_outbox import raw, wait_until  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


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
                          "webhooklite_deliveries", "webhooklite_attempts"}
        assert c.execute("SELECT part, version FROM webhooklite_schema").fetchall() == [("outbox", 2)]
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
