"""The command line, driven as a user drives it: real subprocesses on loopback ports.

`python -m webhooklite listen --port 0` prints its URL first; the tests send to
it with the CLI and with a Sender, read what it prints, and stop it with
SIGINT/SIGTERM (exit 0). Errors must be one line on stderr, never a traceback.
"""
import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import List, Optional

import pytest

import webhooklite
from clitools import CMD, ENV, Proc, blocks_for, free_port, sent_id
from conftest import LoopbackServer
from webhooklite import Receiver, Retry, Sender

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_c3RvcmUtbm90aWZ5LWRlbW8tc2VjcmV0LTMyYnl0ZXM="
OTHER = "whsec_b3RoZXItc2VjcmV0LWZvci10aGUtY2xpLXRlc3Rz"


def cli(*args: str, input: Optional[str] = None, timeout: float = 20, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        CMD + list(args), input=input, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=ENV
    )


def one_line_error(out: subprocess.CompletedProcess, code: int) -> str:
    """The run failed with `code` and said why in exactly one line, with no traceback."""
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr + out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


class Listen(Proc):
    """`webhooklite listen --port 0 ...`; its first line is the URL."""

    def __init__(self, *args: str, cwd: Path = ROOT) -> None:
        super().__init__(CMD + ["listen", "--port", "0"] + list(args), cwd=cwd)
        try:
            self.url = self.line().rstrip("\n")
        except BaseException:
            self.kill()
            raise
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\S*", self.url), self.url

    def __enter__(self) -> "Listen":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


class App:
    """A webhooklite Receiver in this process, recording the events it verified."""

    def __init__(self, secret=SECRET, scheme: str = "standard") -> None:
        self.events: List[webhooklite.Event] = []
        self.receiver = Receiver(secret, scheme=scheme)
        self.receiver.on("boom", self.boom)
        self.receiver.on("*", self.events.append)

    @staticmethod
    def boom(event) -> None:
        raise RuntimeError("the app failed")

    def __enter__(self) -> "App":
        self.server = self.receiver.start(port=0)
        self.url = self.server.url
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()


# -- the small commands ------------------------------------------------------------


def test_version_and_secret():
    out = cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"webhooklite {webhooklite.__version__}"
    a, b = cli("secret"), cli("secret")
    assert a.returncode == 0 and a.stderr == ""
    secret = a.stdout.strip()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret) and secret != b.stdout.strip()
    body = b'{"event":"ping"}'
    headers = webhooklite.sign(body, secret, msg_id="msg_1")  # a valid key: 32 bytes once decoded
    assert webhooklite.verify(body, headers, secret) is not None


@pytest.mark.parametrize("command", [None, "listen", "send", "replay", "verify", "secret"])
def test_every_help_shows_an_example(command):
    out = cli(*([command] if command else []), "--help")
    assert out.returncode == 0, out.stderr
    assert "example" in out.stdout
    name = f"python -m webhooklite {command}" if command else "python -m webhooklite"
    assert re.search(rf"^\s+(export .*\$\()?{re.escape(name)}\b", out.stdout, re.M), out.stdout


# -- listen + send -----------------------------------------------------------------


def test_listen_prints_each_delivery_and_explains_bad_signatures():
    with Listen("--secret", SECRET) as listen:
        first = listen.line()  # the line after the URL says what it does
        assert "standard signatures" in first and "Ctrl-C" in first

        out = cli("send", listen.url, "payment.completed", '{"order_id": "ABC123", "amount": 25.00}', "--secret", SECRET)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("200 OK  attempts: 1  elapsed: ")
        assert '{"status":"ok"}' in out.stdout
        msg_id = sent_id(out.stdout)
        (block,) = listen.blocks(msg_id)
        assert re.match(rf"\d\d:\d\d:\d\d  POST /  payment\.completed  {msg_id}\n", block)
        assert "signature: ok (standard)" in block and "answer:    200 OK" in block
        assert '"order_id": "ABC123"' in block and '"amount": 25.00' in block  # the number exactly as sent

        with Sender(listen.url, SECRET) as sender:  # the library's Sender, too
            d = sender.send("order.shipped", {"order_id": "ABC123", "carrier": "UPS"})
        assert d.ok and d.status == 200
        (block,) = listen.blocks(d.id)
        assert "order.shipped" in block and "signature: ok" in block and '"carrier": "UPS"' in block

        out = cli("send", listen.url, "payment.completed", "{}", "--secret", OTHER)
        assert one_line_error(out, 1).endswith("delivery failed after 1 attempt: 401 Unauthorized")
        assert out.stdout.startswith("401 Unauthorized") and "signature does not match" in out.stdout
        msg_id = sent_id(out.stdout)
        (block,) = listen.blocks(msg_id)
        assert "BAD SIGNATURE: signature does not match: the secret differs from the sender's" in block
        assert "answer:    401 Unauthorized" in block

        d = Sender(listen.url).send("payment.completed", {}, id="msg_unsigned")  # no signature at all
        assert d.status == 401 and d.attempts == 1
        (block,) = listen.blocks("msg_unsigned")
        assert "BAD SIGNATURE: missing webhook-signature header" in block

        with pytest.raises(urllib.error.HTTPError) as refused:  # refused before the body: one line
            urllib.request.urlopen(listen.url, timeout=5)
        assert refused.value.code == 405
        listen.wait_for("GET /  -> 405 Method Not Allowed\n")

        assert listen.stop(signal.SIGINT) == 0
        assert listen.stderr == ""
        assert "\x1b[" not in listen.output  # no colour into a pipe
        assert listen.output.rstrip().endswith("stopped after 4 deliveries")


def test_fault_injection_makes_a_sender_retry_and_listen_shows_the_attempts():
    with Listen("--secret", SECRET, "--fail-rate", "1", "--status", "503", "--retry-after", "0") as listen:
        assert "failing 100% with 503 (Retry-After: 0)" in listen.line()
        retry = Retry(attempts=3, backoff=0.01, max_delay=0.05)  # Retry-After 0: a floor of 0 s
        with Sender(listen.url, SECRET, retry=retry) as sender:
            d = sender.send("payment.completed", {"order_id": "ABC123"})
        assert not d.ok and d.status == 503 and d.attempts == 3 and d.retry_after == 0.0
        blocks = listen.blocks(d.id, 3)
        assert len(blocks) == 3
        assert "attempt" not in blocks[0].split("\n")[0]
        assert blocks[1].split("\n")[0].endswith("attempt 2") and blocks[2].split("\n")[0].endswith("attempt 3")
        for block in blocks:
            assert "answer:    503 Service Unavailable (injected fault, Retry-After: 0)" in block
        assert '"order_id": "ABC123"' in blocks[0]  # retries do not repeat the body
        assert all(b.endswith("(the same body as the attempt before)") for b in blocks[1:])
        assert listen.stop(signal.SIGTERM) == 0
        assert listen.stderr == ""

    # Random faults: what send reports and what listen printed must agree, attempt by attempt.
    with Listen("--secret", SECRET, "--fail-rate", "0.5") as listen:
        out = cli("send", listen.url, "payment.completed", '{"order_id": "ABC125"}', "--secret", SECRET,
                  "--retries", "8", "--backoff", "0.01")
        attempts = int(re.search(r"attempts: (\d+)", out.stdout).group(1))
        retried = re.findall(r"^attempt (\d+): 503 Service Unavailable; retrying in [\d.]+ s$", out.stdout, re.M)
        assert retried == [str(n) for n in range(1, attempts)]
        msg_id = sent_id(out.stdout)
        listen.blocks(msg_id, attempts)
        assert listen.stop() == 0
        blocks = blocks_for(listen.output, msg_id)
        assert len(blocks) == attempts
        answers = [re.search(r"answer:    (\d+)", b).group(1) for b in blocks]
        assert answers[:-1] == ["503"] * (attempts - 1)
        assert (out.returncode, answers[-1]) in ((0, "200"), (1, "503"))

    # --status alone fails every delivery (410 is final: no retry); --delay trips a sender's timeout.
    with Listen("--status", "410", "--delay", "0.4") as listen:
        out = cli("send", listen.url, "ping", "--timeout", "0.15", "--retries", "0")
        assert "timed out after 0.15 s" in one_line_error(out, 1)
        start = time.monotonic()
        d = webhooklite.send(listen.url, "ping", {}, retry=Retry(attempts=3, backoff=0.01))
        assert d.status == 410 and d.attempts == 1 and time.monotonic() - start >= 0.4
        listen.wait_for("410 Gone (injected fault)")
        assert listen.stop() == 0


def test_forward_to_reaches_the_app_with_a_signature_that_still_verifies():
    with App() as app, Listen("--secret", SECRET, "--forward-to", app.url) as listen:
        assert f"forwarding to {app.url}" in listen.line()
        out = cli("send", listen.url, "payment.completed", '{"order_id": "ABC126"}', "--secret", SECRET)
        assert out.returncode == 0, out.stderr
        msg_id = sent_id(out.stdout)
        (event,) = app.events  # the app's Receiver checked the signature and ran its handler
        assert event.id == msg_id and event["order_id"] == "ABC126"
        assert webhooklite.verify(event.body, event.headers, SECRET) is not None
        assert event.headers["user-agent"].startswith("webhooklite/")
        (block,) = listen.blocks(msg_id)
        assert f"answer:    200 OK (from {app.url} in " in block

        # The app's answer is the sender's answer.
        out = cli("send", listen.url, "boom", "{}", "--secret", SECRET, "--retries", "0")
        assert one_line_error(out, 1).endswith("500 Internal Server Error")
        assert "a handler failed" in out.stdout
        listen.wait_for(f"500 Internal Server Error (from {app.url}")
        assert listen.stop() == 0 and listen.stderr == ""

    # Without --secret, listen relays unchecked; an app that is down is a 502 (retryable).
    dead = f"http://127.0.0.1:{free_port()}/hooks"
    with Listen("--forward-to", dead, "--path", "/hooks") as listen:
        assert listen.url.endswith("/hooks")
        d = Sender(listen.url, SECRET, retry=Retry(attempts=2, backoff=0.01)).send("ping", {})
        assert d.status == 502 and d.attempts == 2
        assert webhooklite.send(listen.url[:-len("hooks")], "ping", {}).status == 404
        listen.wait_for("POST /  -> 404 Not Found (listening on /hooks only)")
        listen.wait_for(f"forwarding to {dead} failed: connection refused")
        assert "signature: not checked (no --secret)" in listen.output
        assert listen.stop() == 0


def test_forward_to_drops_the_headers_the_connection_header_names(tmp_path):
    body = webhooklite.events.encode_event("payment.completed", {"order_id": "ABC127"})
    signed = [f"{k}: {v}".encode() for k, v in webhooklite.sign(body, SECRET, msg_id="msg_hop").items()]
    hop = [b"Connection: X-Hop-Token, x-upstream-route", b"X-Hop-Token: internal-only", b"X-Upstream-Route: a",
           b"Keep-Alive: timeout=5", b"X-Kept: yes", b"Content-Type: application/json"]
    with App() as app, Listen("--secret", SECRET, "--forward-to", app.url, "--save", str(tmp_path / "d")) as listen:
        answer = raw_post(listen.url, b"/", signed + hop, body)  # raw_post adds "Connection: close" too
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        (event,) = app.events  # the signature still verified at the app
        assert event.id == "msg_hop" and event.headers["x-kept"] == "yes"
        for name in ("x-hop-token", "x-upstream-route", "keep-alive", "connection"):
            assert name not in event.headers, (name, dict(event.headers))
        assert listen.stop() == 0
    # replay relays the same way: from the saved file, the named headers stay behind.
    (saved,) = (tmp_path / "d").iterdir()
    assert "x-hop-token" in json.loads(saved.read_text())["headers"]  # saved as received
    with App() as app:
        out = cli("replay", str(saved), app.url)
        assert out.returncode == 0, out.stdout + out.stderr
        (event,) = app.events
        assert event.id == "msg_hop" and "x-hop-token" not in event.headers and event.headers["x-kept"] == "yes"


# -- save, verify, replay -----------------------------------------------------------


def test_save_then_verify_then_replay(tmp_path):
    saved = tmp_path / "deliveries"
    with Listen("--secret", SECRET, "--save", str(saved)) as listen:
        out = cli("send", listen.url, "payment.completed", '{"order_id": "ABC123", "note": "é"}', "--secret", SECRET)
        assert out.returncode == 0, out.stderr
        msg_id = sent_id(out.stdout)
        d = Sender(listen.url, SECRET).deliver(b"\xff\xfe not UTF-8", msg_id="msg_binary")
        assert d.status == 400  # signed, but not JSON: the Receiver's answer
        listen.blocks("msg_binary")
        assert listen.stop() == 0
    files = sorted(saved.glob("*.json"))
    assert len(files) == 2 and msg_id in files[0].name and "msg_binary" in files[1].name
    assert f"saved:     {files[0]}" in listen.output
    rec = json.loads(files[0].read_text(encoding="utf-8"))
    assert rec["format"] == "webhooklite-delivery/1" and rec["method"] == "POST" and rec["path"] == "/"
    assert rec["headers"]["webhook-id"] == msg_id and rec["answered"] == 200 and rec["signature"] == "ok"
    assert json.loads(rec["body"])["note"] == "é" and "body_base64" not in rec
    binary = json.loads(files[1].read_text(encoding="utf-8"))
    assert "body" not in binary and binary["answered"] == 400
    assert __import__("base64").b64decode(binary["body_base64"]) == b"\xff\xfe not UTF-8"

    out = cli("verify", *map(str, files), "--secret", SECRET)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert out.stdout.count("ok, the standard signature verifies, signed ") == 2

    out = cli("verify", str(files[0]), "--secret", OTHER)
    assert "standard signature does not verify: signature does not match" in one_line_error(out, 1)
    out = cli("verify", str(files[0]), "--secret", SECRET, "--scheme", "stripe")
    assert "missing Stripe-Signature header; the request carries webhook-signature" in one_line_error(out, 1)
    reformatted = dict(rec, body=json.dumps(json.loads(rec["body"])))  # what a framework would hand over
    (tmp_path / "reformatted.json").write_text(json.dumps(reformatted), encoding="utf-8")
    out = cli("verify", str(tmp_path / "reformatted.json"), "--secret", SECRET)
    assert "parsed and re-serialized before verifying" in one_line_error(out, 1)

    # An hour-old delivery: its signature is still good against when it was received, but
    # a receiver today refuses its timestamp; replay --secret signs it afresh.
    hour_ago = int(time.time()) - 3600
    body = webhooklite.events.encode_event("payment.completed", {"order_id": "OLD1"})
    old = {
        "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(hour_ago + 1)),
        "headers": dict(webhooklite.sign(body, SECRET, msg_id="msg_old", timestamp=hour_ago),
                        **{"content-type": "application/json"}),
        "body": body.decode(),
    }
    (tmp_path / "old.json").write_text(json.dumps(old), encoding="utf-8")
    out = cli("verify", str(tmp_path / "old.json"), "--secret", SECRET)
    assert out.returncode == 0 and "(1 s before it was received)" in out.stdout, out.stdout + out.stderr
    with App() as app:
        out = cli("replay", str(tmp_path / "old.json"), app.url)
        assert "401 Unauthorized" in out.stdout and "--secret re-signs it" in one_line_error(out, 1)
        assert "timestamp is 36" in out.stdout  # the receiver's reason: ~3600 s in the past
        out = cli("replay", str(tmp_path / "old.json"), app.url, "--secret", SECRET)
        assert out.returncode == 0 and '"status":"ok"' in out.stdout and "id: msg_old" in out.stdout
        out = cli("replay", str(tmp_path / "old.json"), app.url, "--secret", SECRET)
        assert out.returncode == 0 and '"status":"duplicate"' in out.stdout
        out = cli("replay", str(tmp_path / "old.json"), app.url, "--secret", SECRET, "--new-id")
        assert out.returncode == 0 and '"status":"ok"' in out.stdout
        assert [e["order_id"] for e in app.events] == ["OLD1", "OLD1"]
        assert app.events[1].id not in ("msg_old", None) and app.events[1].id == sent_id(out.stdout)
        # A fresh saved delivery replays as it is, signature and all.
        out = cli("replay", str(files[0]), app.url)
        assert out.returncode == 0 and app.events[-1].id == msg_id
        out = cli("replay", str(tmp_path / "old.json"), app.url, "--new-id")
        assert "--new-id needs --secret" in one_line_error(out, 2)


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("umask", [0o000, 0o277])
def test_saved_deliveries_are_private_whatever_the_umask(tmp_path, umask):
    made, existing = tmp_path / "new" / "deliveries", tmp_path / "existing"
    existing.mkdir()
    existing.chmod(0o755)
    for folder in (made, existing):
        cmd = " ".join(shlex.quote(a) for a in CMD + ["listen", "--port", "0", "--save", str(folder)])
        listen = Proc(["bash", "-c", f"umask {umask:03o} && exec {cmd}"])
        try:
            url = listen.line().strip()
            d = Sender(url, headers={"Authorization": "Bearer s3cret"}).send("ping", {})
            assert d.ok, d.error
            listen.blocks(d.id)
            assert listen.stop() == 0, listen.stderr
        finally:
            listen.kill()
        (saved,) = folder.iterdir()
        assert json.loads(saved.read_text())["headers"]["authorization"] == "Bearer s3cret"
        assert oct(saved.stat().st_mode & 0o777) == oct(0o600)
    assert oct(made.stat().st_mode & 0o777) == oct(0o700)  # made by listen: private
    assert oct(existing.stat().st_mode & 0o777) == oct(0o755)  # the user's own folder: left alone
    out = cli("listen", "--port", "0", "--save", str(saved))
    assert "--save: cannot make the folder" in one_line_error(out, 2) and "not a folder" in out.stderr


def test_replay_new_id_refuses_stripe_whose_receivers_dedupe_on_the_signed_body_id(tmp_path):
    stripe_secret = "whsec_test_cli_stripe"
    body = json.dumps({"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {}}}).encode()
    headers = dict(webhooklite.sign(body, stripe_secret, scheme="stripe"), **{"content-type": "application/json"})
    path = tmp_path / "evt.json"
    path.write_text(json.dumps({"headers": headers, "body": body.decode()}))
    with App(stripe_secret, scheme="stripe") as app:
        out = cli("replay", str(path), app.url, "--secret", stripe_secret)
        assert out.returncode == 0 and '"status":"ok"' in out.stdout, out.stdout + out.stderr
        out = cli("replay", str(path), app.url, "--secret", stripe_secret, "--new-id")
        error = one_line_error(out, 2)  # not "0, duplicate": it could never have made it new
        assert "--new-id cannot make a Stripe delivery new" in error and 'change "id" in the body' in error
        assert out.stdout == "" and len(app.events) == 1
        # What the error says to do works: a new id in the body, re-signed.
        path.write_text(path.read_text().replace("evt_1", "evt_2"))
        out = cli("replay", str(path), app.url, "--secret", stripe_secret)
        assert out.returncode == 0 and '"status":"ok"' in out.stdout, out.stdout + out.stderr
        assert [e.id for e in app.events] == ["evt_1", "evt_2"]
    out = cli("replay", "--help")
    assert "Not with stripe" in " ".join(out.stdout.split())


# -- send's inputs -------------------------------------------------------------------


def test_send_reads_data_from_text_file_and_stdin_with_headers_raw_and_schemes(tmp_path):
    order = tmp_path / "order.json"
    order.write_text('{\n  "order_id": "ABC123",\n  "amount": 25.00\n}\n', encoding="utf-8")
    with App() as app:
        out = cli("send", app.url, "payment.completed", f"@{order}", "--secret", SECRET,
                  "-H", "X-Trace: abc 1", "-H", "content-type: application/json; charset=utf-8")
        assert out.returncode == 0, out.stderr
        event = app.events[-1]
        assert b'"amount":25.00' in event.body and event.type == "payment.completed"
        assert event.headers["x-trace"] == "abc 1"
        assert event.headers["content-type"] == "application/json; charset=utf-8"  # replaced, not doubled

        out = cli("send", app.url, "order.shipped", "-", "--secret", SECRET, input='{"carrier": "UPS"}')
        assert out.returncode == 0 and app.events[-1]["carrier"] == "UPS"

        raw = '{"text": "New order!",  "blocks": []}'
        out = cli("send", app.url, "ignored", raw, "--raw", "--secret", SECRET)
        assert out.returncode == 0 and app.events[-1].body == raw.encode() and app.events[-1].type is None

        out = cli("send", app.url, "ping", "--secret", OTHER, "--secret", SECRET)  # rotation: signs with both
        assert out.returncode == 0 and app.events[-1].type == "ping"

    with App("It's a Secret to Everybody", scheme="github") as app:
        out = cli("send", app.url, "issues", '{"action": "opened"}', "--scheme", "github",
                  "--secret", "It's a Secret to Everybody")
        assert out.returncode == 0, out.stdout + out.stderr
        assert app.events[-1].type == "issues.opened"


def test_send_help_names_exactly_the_statuses_it_retries(scripted):
    text = " ".join(cli("send", "--help").stdout.split())
    assert "5xx" not in text
    named = re.search(r"retrying connection errors, timeouts and the statuses ([\d, and]+);", text).group(1)
    listed = {int(n) for n in re.findall(r"\d+", named)}
    assert listed == set(webhooklite.sender.RETRY_STATUSES)
    for status in sorted(listed) + [400, 404, 501, 505]:  # what it says, against a real server
        server = scripted([status])
        out = cli("send", server.url, "ping", "--retries", "1", "--backoff", "0")
        assert out.returncode == 1 and "attempts: " in out.stdout, out.stdout + out.stderr
        assert len(server.requests) == (2 if status in listed else 1), (status, out.stdout)


def test_sender_headers_ignore_case_and_leave_the_signature_alone():
    s = Sender("http://127.0.0.1:9/", SECRET, headers={"user-agent": "store/2", "X-Trace": "1"})
    headers = s.prepare(b"{}", "msg_1")
    assert [k for k in headers if k.lower() == "user-agent"] == ["user-agent"]
    assert headers["user-agent"] == "store/2" and headers["X-Trace"] == "1"
    for name in ("Webhook-Signature", "webhook-id", "Content-Length", "Stripe-Signature"):
        with pytest.raises(ValueError, match="set by the Sender itself"):
            Sender("http://127.0.0.1:9/", SECRET, headers={name: "x"})


# -- errors: one line, the right exit status -------------------------------------------


def test_errors_are_one_line_with_the_right_exit_status(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}/"
    out = cli("send", closed, "ping", "--retries", "0")
    assert one_line_error(out, 1).endswith("delivery failed after 1 attempt: no answer: connection refused")
    assert "attempts: 1" in out.stdout

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        out = cli("listen", "--port", str(taken.getsockname()[1]))
        assert "already in use" in one_line_error(out, 1)

    out = cli("send", closed, "payment.completed", '{"order_id": "ABC123" "amount": 25}')
    assert "DATA is not valid JSON: Expecting ',' delimiter at line 1 column 23" in one_line_error(out, 2)
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "a": 1,\n  "b": tru\n}\n', encoding="utf-8")
    out = cli("send", closed, "ping", f"@{broken}")
    assert f"{broken} is not valid JSON: Expecting value at line 3 column 8" in one_line_error(out, 2)

    for missing in (tmp_path / "nope.json", tmp_path):
        out = cli("send", closed, "ping", f"@{missing}")
        assert f"cannot read DATA from {missing}" in one_line_error(out, 2)
    out = cli("verify", str(tmp_path / "nope.json"), "--secret", SECRET)
    assert "cannot read" in one_line_error(out, 2)
    (tmp_path / "not-saved.json").write_text("[1, 2]")
    out = cli("replay", str(tmp_path / "not-saved.json"), closed)
    assert "is not a saved delivery" in one_line_error(out, 2)
    (tmp_path / "surrogate.json").write_text('{"headers": {}, "body": "\\ud800"}')
    out = cli("verify", str(tmp_path / "surrogate.json"), "--secret", SECRET)
    assert "lone surrogate" in one_line_error(out, 2)

    out = cli("send", closed, "ping", "--secret", "whsec_dG9vLXNob3J0")
    assert "--secret: the 'whsec_' secret decodes to 9 bytes" in one_line_error(out, 2)
    out = cli("listen", "--port", "0", "--secret", "whsec_!!!not-base64")
    assert "--secret: the 'whsec_' secret is not valid base64" in one_line_error(out, 2)

    for args, words in [
        (("send", closed, "ping", "[1, 2]"), "DATA is a JSON list, not an object"),
        (("send", closed, "ping", '{"event": "x"}'), "field named 'event'"),
        (("send", closed, "ping", "NaN"), "NaN is not a JSON value"),
        (("send", closed, "ping", "--raw"), "--raw posts DATA as is"),
        (("send", closed, "ping", "-H", "no colon"), "is not 'Name: value'"),
        (("send", "ftp://example.com/", "ping"), "http:// or https://"),
        (("send", closed, "ping", "--retries", "-1"), "0 to 100"),
        (("listen", "--fail-rate", "2"), "a fraction from 0 to 1"),
        (("listen", "--retry-after", "5"), "--retry-after goes with --fail-rate or --status"),
        (("listen", "--forward-to", "localhost:3000"), "--forward-to must be an http:// or https:// URL"),
        (("listen", "--nope"), "unrecognized arguments: --nope"),
        (("verify", "x.json"), "--secret"),
        ((), "COMMAND"),
    ]:
        assert words in one_line_error(cli(*args), 2), args


# -- what a sender must never reach: the operator's terminal -------------------------

#: Characters that must never reach a terminal raw: every control character (C0, DEL and
#: C1, where 8-bit CSI and OSC live), bidi overrides and isolates, and the other format
#: characters and separators that hide or reorder text; lone surrogates too.
UNSAFE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs"}


def unsafe_chars(text: str) -> List[str]:
    import unicodedata

    return sorted({c for c in text if c not in "\n" and unicodedata.category(c) in UNSAFE_CATEGORIES})


HOSTILE = ["\x1b]0;owned\x07", "\x9b31m", "\x9d0;owned\x9c", "\x7f", "\u202egnp.exe", "\u2066x\u2069",
           "\u200b", "\u2028", "\ufeff", "\xad", "\U000e0041"]


def raw_post(url: str, target: bytes, headers: List[bytes], body: bytes) -> bytes:
    """One POST written byte for byte (http.client refuses to write what a hostile sender would)."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        head = b"POST " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        head += b"".join(h + b"\r\n" for h in headers) + b"Content-Length: %d\r\n\r\n" % len(body)
        s.sendall(head + body)
        answer = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return answer
            answer += chunk


def test_listen_escapes_every_control_and_bidi_character_a_sender_sends():
    with Listen() as listen:
        listen.line()
        # JSON: hostile keys, strings and event type; a lone surrogate escape; an id and a path with C1 bytes.
        fields = {f"key{n}{h}": f"value{n}{h}" for n, h in enumerate(HOSTILE)}
        body = json.dumps(dict(fields, event="pay\u202ement", list=["\x9b2J", "SURROGATE"]), ensure_ascii=False)
        body = body.replace("SURROGATE", "\\ud800").encode("utf-8")
        answer = raw_post(listen.url, b"/hooks\x85", [b"Content-Type: application/json",
                                                       b"webhook-id: msg_hostile\x9b\x1b[2J"], body)
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        # Not JSON: shown as text, over several lines.
        text = ("line one\n" + "".join(HOSTILE) + "\nline three").encode("utf-8")
        answer = raw_post(listen.url, b"/", [b"Content-Type: text/plain", b"webhook-id: msg_text"], text)
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        (json_block,) = listen.blocks("msg_hostile")
        (text_block,) = listen.blocks("msg_text")
        assert listen.stop() == 0
    assert unsafe_chars(listen.output) == [], listen.output
    # Shown escaped, so the operator sees what was sent; JSON strings in JSON's own escapes.
    assert r"POST /hooks\x85  pay\u202ement  msg_hostile\x9b\x1b[2J" in json_block
    assert r'"key1\u009b31m": "value1\u009b31m"' in json_block
    assert r'"key0\u001b]0;owned\u0007"' in json_block and r'"\u009b2J"' in json_block
    assert r'"key4\u202egnp.exe"' in json_block and r'"value10\udb40\udc41"' in json_block
    assert r'"\ud800"' in json_block
    assert "  line one\n  " + r"\x1b]0;owned\x07\x9b31m\x9d0;owned\x9c\x7f\u202egnp.exe" in text_block
    assert "\n  line three" in text_block


def test_one_escaping_rule_covers_every_unsafe_character_this_python_knows():
    import unicodedata

    from webhooklite.cli.output import clean

    every = "".join(chr(n) for n in range(0x110000))
    unsafe = [c for c in every if unicodedata.category(c) in UNSAFE_CATEGORIES]
    assert len(unsafe) > 2000  # C0, C1, the surrogates, the format characters...
    assert unsafe_chars(clean(every) + clean(every, in_json=True)) == [] and "\n" not in clean(every)
    assert unsafe_chars(clean(every, keep_lines=True)) == ["\t"]  # and "\n": a body's own lines
    assert clean("é ü 日本 🙂 tab\there") == "é ü 日本 🙂 tab\\x09here"  # the rest stays readable
    assert clean("a\tb\nc\x85", keep_lines=True) == "a\tb\nc\\x85"
    hostile = "\x85\u202e\U000e0041"
    assert json.loads(clean(json.dumps(hostile, ensure_ascii=False), in_json=True)) == hostile  # still JSON


def test_table_and_json_output_escape_their_cells():
    import io

    from webhooklite.cli.output import Style, print_json, table

    lines = table(["ID", "URL", "LAST ERROR"], [[1, "https://a.example/", None], [12, "x", "bad\x1b[2J\u202e"]])
    assert lines == ["ID  URL                 LAST ERROR",
                     "1   https://a.example/  -",
                     "12  x                   bad\\x1b[2J\\u202e"]
    assert table(["A"], [], Style(True)) == ["\x1b[1mA\x1b[0m"]
    with pytest.raises(ValueError):
        table(["A", "B"], [[1]])
    out = io.StringIO()
    print_json({"error": "bad\x9b\u202e", "n": 1}, out)
    assert out.getvalue().isascii() and json.loads(out.getvalue()) == {"error": "bad\x9b\u202e", "n": 1}


class HostileApp(LoopbackServer):
    """An endpoint whose status line, Location and body try to drive the terminal."""

    def respond(self, conn, method, path, headers, body):
        payload = ("answered: " + "".join(HOSTILE)).encode("utf-8")
        head = ("HTTP/1.1 302 Fo\x1b]0;und\x07\r\nLocation: http://127.0.0.1/\x1b]0;owned\x07\x9b31m\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n")
        conn.sendall(head.encode("latin-1") + payload)
        return False


def test_send_and_replay_escape_what_the_server_answers(tmp_path):
    app = HostileApp()
    try:
        out = cli("send", app.base + "/", "ping", "--retries", "0")
        assert unsafe_chars(out.stdout + out.stderr) == [], out.stdout + out.stderr
        assert "redirect to http://127.0.0.1/" in one_line_error(out, 1)
        assert r"answered: \x1b]0;owned\x07\x9b31m" in out.stdout
        saved = tmp_path / "d.json"
        saved.write_text(json.dumps({"headers": {"content-type": "application/json"}, "body": "{}"}))
        out = cli("replay", str(saved), app.base + "/")
        assert unsafe_chars(out.stdout + out.stderr) == [], out.stdout + out.stderr
        assert "replay answered 302 Found" in one_line_error(out, 1)
    finally:
        app.close()


# -- colour --------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize("no_color", [False, True])
def test_colour_only_on_a_terminal_and_never_with_no_color(no_color):
    master, slave = os.openpty()
    env = dict(ENV, TERM="xterm")
    if no_color:
        env["NO_COLOR"] = "1"
    proc = subprocess.Popen(CMD + ["listen", "--port", "0"], stdout=slave, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    os.close(slave)
    got = b""

    def read_until(pattern: bytes, timeout: float = 10) -> None:
        nonlocal got
        deadline = time.monotonic() + timeout
        while pattern not in got:
            left = deadline - time.monotonic()
            assert left > 0, got
            if select.select([master], [], [], left)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the other end closed
                    chunk = b""
                assert chunk, got
                got += chunk

    try:
        read_until(b"\n")
        url = got.split(b"\r\n")[0].decode()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url), got  # the URL line itself is plain
        d = webhooklite.send(url, "payment.completed", {"order_id": "ABC123", "amount": 25})
        assert d.ok
        read_until(b"}\r\n")
        assert (b"\x1b[" in got) is not no_color, got
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
        proc.stderr.close()


def test_send_under_stripe_puts_an_id_in_the_body_so_two_sends_are_two_events():
    """Stripe signs no id header: a receiver dedupes on the body's "id" (else on the signed
    timestamp and body, which two sends of the same DATA within a second share)."""
    stripe_secret = "whsec_test_cli_stripe"
    with App(stripe_secret, scheme="stripe") as app:
        outs = [cli("send", app.url, "payment_intent.succeeded", '{"amount": 2500}', "--scheme", "stripe",
                    "--secret", stripe_secret) for _ in range(2)]
        assert all(o.returncode == 0 and '"status":"ok"' in o.stdout for o in outs), [o.stdout for o in outs]
        printed = [re.search(r"id: (\S+)", o.stdout).group(1) for o in outs]
        assert [e.id for e in app.events] == printed and printed[0] != printed[1]
        assert all(json.loads(e.body)["id"] == e.id for e in app.events)
        # DATA's own "id" is the id: sent twice, the second is a duplicate, as Stripe's redelivery would be.
        for expected in ('"status":"ok"', '"status":"duplicate"'):
            out = cli("send", app.url, "payment_intent.succeeded", '{"id": "evt_own", "amount": 1}',
                      "--scheme", "stripe", "--secret", stripe_secret)
            assert out.returncode == 0 and expected in out.stdout and "id: evt_own" in out.stdout, out.stdout
        assert [e.id for e in app.events][2:] == ["evt_own"]
        bad = cli("send", app.url, "payment_intent.succeeded", '{"id": "evt\\nX-Evil: 1"}', "--scheme", "stripe",
                  "--secret", stripe_secret)
        assert "DATA's \"id\"" in one_line_error(bad, 2)
