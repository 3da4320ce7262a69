"""The admin command line, driven as an operator drives it: ``outbox DB ...``, ``inbox DB ...`` and
``check URL``, as subprocesses on real sqlite files and a real PostgreSQL (the ``db`` fixture runs
each body on both), against real loopback servers. Errors are one line, never a traceback."""
import json
import os
import re
import select
import sqlite3
import subprocess
import time

import pytest

import webhooklite
from clitools import CMD, ENV, ROOT, free_port
from conftest import LoopbackServer, SECRET, signed
from test_outbox_health import Server


def run(*args, input=None, env=None):
    return subprocess.run(CMD + [str(a) for a in args], input=input, capture_output=True, text=True, timeout=30,
                          cwd=ROOT, env=env or dict(ENV, NO_COLOR="1"))


def at_once(*commands):
    """Run commands that do not depend on each other at the same time (as two operators might); their
    results in order."""
    procs = [subprocess.Popen(CMD + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT, env=dict(ENV, NO_COLOR="1")) for args in commands]
    results = []
    for args, p in zip(commands, procs):
        out, err = p.communicate(timeout=30)
        results.append(subprocess.CompletedProcess(args, p.returncode, out, err))
    return results


def ok(*args, input=None, out=None):
    out = out or run(*args, input=input)
    assert out.returncode == 0 and "Traceback" not in out.stderr, (out.args, out.stdout, out.stderr)
    return out.stdout


def error(code, *args, out=None):
    """The command failed with ``code`` and said why in one line on stderr."""
    out = out or run(*args)
    assert out.returncode == code, (out.args, out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr + out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def rows(text):
    """A table's lines as lists of cells (cells are separated by two spaces or more)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


@pytest.fixture
def server():
    s = Server(down=500)
    yield s
    s.close()


def prepared(db, server):
    """An outbox with a healthy endpoint (3 delivered) and a failing one (3 dead, two attempts each)."""
    with webhooklite.Outbox(db.target, schedule=(0, 0.01), disable_after=None) as outbox:
        good = outbox.add_endpoint(server.base + "/ok", secret=SECRET, headers={"Authorization": "Bearer t0ken"})
        down = outbox.add_endpoint(server.base + "/down", secret=SECRET)
        ids = outbox.send_many([("order.created", {"n": i}) for i in range(3)])
        assert outbox.drain(timeout=10)
        dead = [d.id for d in outbox.dead()]
        delivered = outbox.deliveries("delivered")[0]
    return good, down, ids, dead, delivered


def test_outbox_listings_as_tables_and_json(db, server):
    good, down, ids, dead, delivered = prepared(db, server)
    t = db.target
    runs = iter(at_once(("outbox", t, "endpoints"), ("outbox", t, "endpoints", "--json"), ("outbox", t, "stats"),
                        ("outbox", t, "stats", "--json"), ("outbox", t, "dead"), ("outbox", t, "dead", "--json"),
                        ("outbox", t, "attempts", dead[0]), ("outbox", t, "attempts", dead[0], "--json"),
                        ("outbox", t, "deliveries", "--state", "delivered", "--endpoint", good)))
    out = ok(out=next(runs))
    table = rows(out)
    assert table[0] == ["ID", "URL", "TENANT", "EVENTS", "SCHEME", "STATE"]
    assert table[1] == [str(good), server.base + "/ok", "-", "*", "standard", "enabled"]
    assert table[2][1] == server.base + "/down" and table[2][5].startswith("failing since")
    listed = json.loads(ok(out=next(runs)))
    assert [e["id"] for e in listed] == [good, down] and listed[0]["header_names"] == ["Authorization"]
    everything = out + json.dumps(listed)
    assert SECRET not in everything and "t0ken" not in everything and "secret" not in everything.lower()

    stats = rows(ok(out=next(runs)))
    assert stats[0][:6] == ["ID", "URL", "STATE", "PENDING", "DELIVERED", "DEAD"]
    assert stats[1][2:6] == ["enabled", "0", "3", "0"] and stats[1][7:9] == ["3", "100%"]
    assert stats[2][3:6] == ["0", "0", "3"] and stats[2][6] == "-" and stats[2][7:9] == ["6", "0%"]
    as_json = json.loads(ok(out=next(runs)))
    assert as_json[str(down)]["dead"] == 3 and as_json[str(down)]["last_hour"]["attempts"] == 6
    assert as_json[str(good)]["last_success"] <= time.time()

    dead_rows = rows(ok(out=next(runs)))
    assert [r[0] for r in dead_rows[1:]] == [str(i) for i in sorted(dead, reverse=True)]
    assert all(r[6] == "500 Internal Server Error" and r[5] == "2" for r in dead_rows[1:])
    assert [d["message_id"] for d in json.loads(ok(out=next(runs)))][::-1] == ids

    attempts = ok(out=next(runs))
    head, *log = attempts.strip().splitlines()
    assert head.startswith(f"delivery {dead[0]}: message ") and head.endswith("dead, 2 attempt(s)")
    assert [r[2] for r in rows("\n".join(log))[1:]] == ["500 Internal Server Error"] * 2
    assert '{"answer":"from the test server"}' in attempts
    detail = json.loads(ok(out=next(runs)))
    assert json.loads(detail["body"])["event"] == "order.created"
    assert [a["status"] for a in detail["attempts_log"]] == [500, 500]

    delivered = rows(ok(out=next(runs)))
    assert len(delivered) == 4 and {r[4] for r in delivered[1:]} == {"delivered"}


def test_outbox_actions_disable_retry_recover_enable_add_purge(db, server):
    good, down, ids, dead, delivered = prepared(db, server)
    assert ok("outbox", db.target, "disable", down, "--reason", "their maintenance").startswith(
        f"endpoint {down} disabled: their maintenance")
    t = db.target
    retry, recover, recover_one = at_once(("outbox", t, "retry", dead[0]), ("outbox", t, "recover", "--since", "1h"),
                                          ("outbox", t, "recover", "--since", "1h", "--endpoint", down))
    assert "disabled" in error(1, out=retry)  # nothing to deliver it to
    said = ok(out=recover)
    assert said.startswith("0 dead delivery(ies) since") and f"3 left dead: their endpoint(s) {down}" in said
    assert "disabled" in error(1, out=recover_one)
    server.answers["/down"] = 200
    assert "enabled: 0 pending" in ok("outbox", db.target, "enable", server.base + "/down")  # by URL
    recover, retry = at_once(("outbox", t, "recover", "--since", "2h", "--endpoint", down, "--json"),
                             ("outbox", t, "retry", delivered.id, "--json"))
    recovered = json.loads(ok(out=recover))
    assert recovered["recovered"] == 3 and recovered["left_dead"] == {}
    assert json.loads(ok(out=retry))["due_now"] is True  # a delivered one: sent again
    with webhooklite.Outbox(db.target) as outbox:
        assert outbox.drain(timeout=10) and outbox.dead() == []
    assert sorted(server.ids("/down")[-3:]) == sorted(ids)  # the same message ids, sent again
    assert server.ids("/ok").count(delivered.message_id) == 2

    # A new endpoint, its secret from stdin (so it is in no shell history), then updated.
    secret = webhooklite.generate_secret()
    receiver = webhooklite.Receiver(secret)
    got = []
    receiver.on("payment.*", lambda event: got.append(event.id))
    with receiver.start() as app:
        out = ok("outbox", db.target, "add-endpoint", app.url, "--secret", "-", "--events", "payment.*",
                 "--tenant", "acme", "--timeout", "5s", input=secret + "\n")
        assert out.strip() == f"endpoint 3 added: {app.url}" and secret not in out
        again = json.loads(ok("outbox", db.target, "add-endpoint", app.url, "--tenant", "acme", "--json"))
        assert again == {"id": 3, "created": False}
        with webhooklite.Outbox(db.target) as outbox:
            msg = outbox.send("payment.completed", {"order_id": "ABC123"}, tenant="acme")
            assert outbox.drain(timeout=10)
        assert got == [msg]  # signed with the secret that came from stdin
    listed, bad_url, purged, no_delivery, no_endpoint, bad_duration = at_once(
        ("outbox", t, "endpoints", "--json"), ("outbox", t, "add-endpoint", "ftp://x/"),
        ("outbox", t, "purge", "--older-than", "0s"), ("outbox", t, "retry", 999), ("outbox", t, "disable", 99),
        ("outbox", t, "recover", "--since", "2x"))
    endpoint = json.loads(ok(out=listed))[2]
    assert (endpoint["tenant"], endpoint["events"], endpoint["timeout"]) == ("acme", ["payment.*"], 5.0)
    assert "must be http:// or https://" in error(2, out=bad_url)
    assert ok(out=purged).startswith("7 delivered delivery(ies)")
    assert json.loads(ok("outbox", t, "purge", "--json")) == {"purged": 0}
    assert "no delivery 999" in error(1, out=no_delivery)
    assert "no endpoint 99" in error(1, out=no_endpoint)
    assert "not a duration" in error(2, out=bad_duration)


def test_a_missing_or_foreign_file_is_a_clear_error_and_is_left_alone(tmp_path):
    missing = tmp_path / "typo.db"
    assert error(2, "outbox", missing, "stats").endswith(f"no such outbox file: {missing}")
    assert not missing.exists()
    assert "is a folder" in error(2, "inbox", tmp_path, "stats")
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all, but long enough to look like one " * 20)
    assert "is not a sqlite database" in error(2, "outbox", text, "endpoints")
    theirs = tmp_path / "app.db"
    conn = sqlite3.connect(theirs)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    before = theirs.read_bytes()
    assert "is not a webhooklite outbox: the file has no webhooklite tables" in error(2, "outbox", theirs, "dead")
    assert theirs.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["app.db", "notes.txt"]
    inbox = tmp_path / "inbox.db"
    webhooklite.Inbox(str(inbox)).close()
    assert "holds no webhooklite outbox (it holds the inbox)" in error(2, "outbox", inbox, "stats")
    outbox = tmp_path / "outbox.db"
    webhooklite.Outbox(str(outbox)).close()
    assert "holds no webhooklite inbox (it holds the outbox)" in error(2, "inbox", outbox, "stats")
    assert "no endpoints" in ok("outbox", outbox, "stats")


def test_a_postgresql_database_without_webhooklite_tables_or_unreachable_says_so(postgres):
    url = postgres()
    assert "has no webhooklite tables" in error(2, "outbox", url, "stats")
    import psycopg

    with psycopg.connect(url) as c:
        assert c.execute("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() "
                         "AND tablename LIKE 'webhooklite%'").fetchone() == (0,)
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?connect_timeout=2"
    assert "cannot reach PostgreSQL" in error(1, "outbox", closed, "stats")


RUNS = []


def record(event):
    RUNS.append(event.id)


def fails_on(flag):
    def handler(event):
        if event.get(flag):
            raise RuntimeError(f"{flag} is set")

    return handler


def test_inbox_dead_show_retry_replay_stats(db):
    inbox = webhooklite.Inbox(db.target, schedule=(0,), workers=1)
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    RUNS.clear()
    receiver.on("order.*", record)
    receiver.on("order.*", fails_on("broken"))
    for n, broken in enumerate([False, True]):
        headers, body = signed("order.created", {"n": n, "broken": broken}, msg_id=f"msg_{n}")
        assert receiver.handle("POST", "/", headers, body).status == 202
    assert inbox.drain(timeout=10)
    inbox.close()

    t = db.target
    runs = iter(at_once(("inbox", t, "dead"), ("inbox", t, "show", "msg_1"), ("inbox", t, "stats"),
                        ("inbox", t, "stats", "--json"), ("inbox", t, "show", 99)))
    dead = rows(ok(out=next(runs)))
    assert dead[0][:4] == ["ID", "MESSAGE", "TYPE", "STATE"] and len(dead) == 2
    assert dead[1][1:4] == ["msg_1", "order.created", "dead"] and "RuntimeError: broken is set" in dead[1][5]
    shown = ok(out=next(runs))
    assert shown.startswith("event 2: message msg_1 (order.created), dead, 1 attempt(s)")
    handlers = {r[0]: r[1:] for r in rows(shown.split("\n", 1)[1].split("\n  ")[0])[1:]}
    assert handlers["test_cli_admin.record"][0] == "done"
    assert handlers["test_cli_admin.fails_on.<locals>.handler"][:2] == ["failed", "1"]
    assert '"broken": true' in shown  # the body, as JSON
    stats = ok(out=next(runs))
    assert stats.startswith("events: 0 pending, 1 done, 1 dead")
    assert json.loads(ok(out=next(runs)))["handlers"]["test_cli_admin.record"] == {"succeeded": 2, "failures": 0}
    assert "no event 99" in error(1, out=next(runs))

    assert json.loads(ok("inbox", db.target, "retry", 2, "--json")) == {"event": 2, "message_id": "msg_1",
                                                                         "due_now": True}
    assert "pending already" in ok("inbox", db.target, "retry", "msg_1")
    assert ok("inbox", db.target, "replay", "--since", "1h").startswith("1 event(s) received since")
    # A duration no clock can show is a usage error before anything runs, not a traceback after.
    assert "too long a duration" in error(2, "inbox", db.target, "replay", "--since", "99999999999999999999d")
    events = json.loads(ok("inbox", db.target, "events", "--state", "pending", "--json"))
    assert sorted(e["message_id"] for e in events) == ["msg_0", "msg_1"]
    # The handlers run where the inbox's workers run: msg_1's first handler, which succeeded, is not
    # run again by the retry; the replay runs msg_0's again.
    inbox = webhooklite.Inbox(db.target, schedule=(0,), workers=1)
    receiver = webhooklite.Receiver(SECRET, inbox=inbox)
    receiver.on("order.*", record)
    receiver.on("order.*", fails_on("never"))
    assert inbox.drain(timeout=10)
    inbox.close()
    assert sorted(RUNS) == ["msg_0", "msg_0", "msg_1"]
    assert ok("inbox", db.target, "purge", "--older-than", "0s").startswith("2 done event(s)")


# -- check -----------------------------------------------------------------------------------

SCHEME_SECRETS = {"standard": SECRET, "github": "It's a Secret to Everybody", "stripe": "whsec_test_secret"}


@pytest.mark.parametrize("scheme", sorted(SCHEME_SECRETS))
def test_check_passes_against_webhooklites_own_receiver(scheme):
    receiver = webhooklite.Receiver(SCHEME_SECRETS[scheme], scheme=scheme, path="/hooks")
    handled = []
    receiver.on("*", lambda event: handled.append(event.id))
    with receiver.start() as server:
        out = ok("check", server.url, "--secret", SCHEME_SECRETS[scheme], "--scheme", scheme)
    lines = out.strip().splitlines()
    assert lines[0].startswith(f"checking {server.url} ({scheme} scheme):")
    assert all(line.startswith("pass  ") for line in lines[2:-1]), out
    assert re.fullmatch(r"all \d+ probes answered as a careful receiver does", lines[-1])
    assert len(handled) == sum(r[0] == "pass" and r[3] == "2xx" for r in rows("\n".join(lines[2:-1]))) - 1


class YesToEverything(LoopbackServer):
    def respond(self, conn, method, path, headers, body):
        return self.answer(conn, 200)


def test_check_names_every_probe_a_receiver_that_answers_200_to_everything_fails():
    from webhooklite.conformance import REFUSE, probes

    should_refuse = [p.name for p in probes(SECRET) if p.expect == REFUSE]
    server = YesToEverything()
    try:
        out = run("check", server.base + "/", "--secret", SECRET)
        report = json.loads(run("check", server.base + "/", "--secret", SECRET, "--json").stdout)
    finally:
        server.close()
    assert out.returncode == 1 and "Traceback" not in out.stderr
    failed = [r[1] for r in rows(out.stdout.split("\n", 1)[1]) if r[0] == "FAIL"]
    assert failed == should_refuse and len(failed) >= 8
    assert all(re.search(rf"FAIL  {re.escape(name)}\s+200 OK\s+4xx", out.stdout) for name in failed)
    assert out.stdout.strip().splitlines()[-1].startswith(f"{len(failed)} of {len(failed) + 3} probes were not")
    assert report["passed"] is False
    assert [r["probe"] for r in report["results"] if not r["ok"]] == should_refuse


def test_check_usage_errors_and_a_receiver_that_is_not_there():
    assert "--secret" in error(2, "check", "http://127.0.0.1:9/", "--secret", "whsec_tooshort")
    assert "http://" in error(2, "check", "ftp://127.0.0.1/", "--secret", SECRET)
    assert "required" in error(2, "check", "http://127.0.0.1:9/")
    out = run("check", f"http://127.0.0.1:{free_port()}/", "--secret", SECRET, "--timeout", "2")
    assert out.returncode == 1 and "no answer" in out.stdout and "is http://" in out.stdout, out.stdout


@pytest.mark.parametrize("command", ["outbox", "inbox", "check"])
def test_help_shows_examples(command):
    out = ok(command, "--help")
    assert "examples:" in out and f"python -m webhooklite {command} " in out and "exit status" in out


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize("no_color", [False, True])
def test_tables_are_coloured_on_a_terminal_unless_no_color(tmp_path, server, no_color):
    target = str(tmp_path / "o.db")
    with webhooklite.Outbox(target, schedule=(0,)) as outbox:
        outbox.add_endpoint(server.base + "/down")
        outbox.send("x", {})
        assert outbox.drain(timeout=10)
    master, slave = os.openpty()
    env = dict(ENV, TERM="xterm", **({"NO_COLOR": "1"} if no_color else {}))
    proc = subprocess.Popen(CMD + ["outbox", target, "dead"], stdout=slave, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    os.close(slave)
    got = b""
    try:
        while select.select([master], [], [], 10)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other end closed
                break
            if not chunk:
                break
            got += chunk
        assert proc.wait(10) == 0
    finally:
        os.close(master)
        proc.stderr.close()
    assert b"500 Internal Server Error" in got
    assert (b"\x1b[31m" in got) is not no_color, got


def test_one_duration_helper_reads_what_an_operator_types():
    import argparse

    from webhooklite.cli.admin import duration, span

    assert [duration(t) for t in ("90s", "30m", "2h", "7d", "1w", "1h30m", "90", "0.5", "1.5h")] == [
        90, 1800, 7200, 604800, 604800, 5400, 90, 0.5, 5400]
    for bad in ("", "2x", "h", "-1h", "1 h", "2hours"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
            duration(bad)
    for too_long in ("99999999999999999999d", "5300w", "3200000000"):
        with pytest.raises(argparse.ArgumentTypeError, match="too long a duration"):
            duration(too_long)
    assert duration("100w") == 100 * 604800
    assert [span(s) for s in (604800, 86400 * 3, 7200, 5400, 90, 0.5)] == ["1w", "3d", "2h", "90m", "90s", "0.5s"]
