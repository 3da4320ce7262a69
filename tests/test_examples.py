"""Every example runs as its docstring says (`--demo`, or no arguments), exits 0 and prints what it did;
outside `--demo`, none runs on a secret written in the repository.

Each runs as a subprocess from the repository root, without webhooklite
installed (the examples fall back to the folder next door), as on a fresh clone.
"""
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

import webhooklite
from clitools import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
#: Every variable an example reads: a test sets only the ones it means to.
EXAMPLE_VARS = ("PYTHONPATH", "WEBHOOK_SECRET", "WEBHOOK_DB", "GITHUB_WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET",
                "ORDERS_WEBHOOK_URL", "ORDERS_WEBHOOK_SECRET",
                "SLACK_WEBHOOK_URL")


def clean_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in EXAMPLE_VARS}
    env.update(extra)
    return env


def run(*args, timeout=30):
    env = clean_env()
    out = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, f"{args} exited {out.returncode}\n{out.stdout}\n{out.stderr}"
    assert "Traceback" not in out.stderr, out.stderr
    return out


def test_github_receiver_demo():
    out = run("examples/github_receiver.py", "--demo").stdout
    assert "issue #42 opened in octo-org/shop by janedoe: Blue T-Shirt shows $0 at checkout" in out
    assert "push to octo-org/shop main by janedoe: 1 commit, head 9b1e7c4 'Fix price rounding at checkout'" in out
    assert 'GitHub delivery issues (redelivered): 200 {"status":"duplicate"}' in out
    assert "GitHub delivery push (wrong secret): 401" in out
    assert out.count("issue #42 opened") == 1, "a redelivery ran the handler again"


def test_stripe_receiver_demo():
    out = run("examples/stripe_receiver.py", "--demo").stdout
    assert "payment pi_3PqR8sLkdIwHu7ix0Zx9Yw8V succeeded: $25.00 USD for order ABC123" in out
    assert "completed by Jane D. <jane@example.com>: $25.00 USD, paid" in out
    assert 'Stripe event payment_intent.succeeded (retried): 200 {"status":"duplicate"}' in out
    assert "Stripe event checkout.session.completed (wrong secret): 401" in out
    assert out.count("succeeded: $25.00") == 1, "a retry ran the handler again"


def test_slack_notify_demo():
    out = run("examples/slack_notify.py", "--demo", "Blue T-Shirt sold").stdout
    assert "slack stand-in got on /services/T000/B000/XXXX: Blue T-Shirt sold" in out
    assert "Slack answered 200 'ok'" in out


def test_slack_notify_without_a_url_is_a_usage_error():
    env = {k: v for k, v in os.environ.items() if k != "SLACK_WEBHOOK_URL"}
    out = subprocess.run(
        [sys.executable, "examples/slack_notify.py", "hi"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2 and "SLACK_WEBHOOK_URL" in out.stderr


def test_signup_email_both_halves():
    out = run("examples/signup_email.py").stdout
    assert "To: jane@example.com\nSubject: Thanks for signing up, Jane!" in out
    assert re.search(r"website: email tool answered 200 in \d+ ms", out)


def test_gunicorn_app_demo_handles_a_retry_on_another_worker_once():
    out = run("examples/gunicorn_app.py", "--demo").stdout
    tries = re.findall(r"try (\d) of (msg_\S+) -> worker \d: (\d+) (.*)", out)
    assert [(n, status, body) for n, _, status, body in tries] == [
        ("1", "200", '{"status":"ok"}'),
        ("2", "200", '{"status":"duplicate"}'),
    ]
    assert tries[0][1] == tries[1][1], "the retry carries the same message id"
    assert len(re.findall(r"worker \d+: New order! Item: Blue T-Shirt\. Customer: Jane D\.", out)) == 1


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_every_example_explains_itself(name):
    out = run(f"examples/{name}", "--help")
    assert "usage:" in out.stdout


# -- outside --demo: the secret comes from the environment, or the example refuses to run --------

#: The secrets written in the examples, which anyone who reads them can sign with.
BUILT_IN = {
    "github_receiver.py": "It's a Secret to Everybody",
    "stripe_receiver.py": "whsec_5f8c1e2d3b4a69788766554433221100aabbccdd",
    "store_notify.py": "whsec_c3RvcmUtbm90aWZ5LWRlbW8tc2VjcmV0LTMyYnl0ZXM=",
    "signup_email.py": "whsec_c2lnbnVwLWVtYWlsLWRlbW8tc2VjcmV0LTMyYnl0ZXM=",
    "gunicorn_app.py": "whsec_Z3VuaWNvcm4tYXBwLWRlbW8tc2VjcmV0LTMyYnl0ZXM=",
}
#: (example, its arguments, the variable it needs, the URL path it serves, the scheme).
RECEIVERS = [
    ("github_receiver.py", [], "GITHUB_WEBHOOK_SECRET", "/github", "github"),
    ("stripe_receiver.py", [], "STRIPE_WEBHOOK_SECRET", "/stripe", "stripe"),
    ("store_notify.py", ["notifier"], "WEBHOOK_SECRET", "/", "standard"),
    ("signup_email.py", ["email"], "WEBHOOK_SECRET", "/", "standard"),
]


def deliver(url: str, secret: str, scheme: str) -> webhooklite.Delivery:
    """A delivery of an event no example handles (so a verified one is answered 200, "ignored")."""
    with webhooklite.Sender(url, secret, scheme=scheme, retry=webhooklite.Retry(attempts=1), timeout=5) as sender:
        if scheme == "stripe":
            return sender.post({"id": "evt_probe", "type": "probe.sent", "data": {"object": {}}})
        return sender.send("probe.sent", {"note": "who signed this?"})


def start(argv: List[str], env: Dict[str, str], port: int, timeout: float = 20) -> Tuple[subprocess.Popen, bool]:
    """Start a server; return it and whether it listens on ``port`` (False: it exited first)."""
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc, False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, True
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{argv} neither listened on {port} nor exited in {timeout} s")


def stop(proc: subprocess.Popen) -> Tuple[int, str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=5)
    return proc.returncode, out, err


def test_the_built_in_secrets_are_the_examples_own():
    for name, secret in BUILT_IN.items():
        assert repr(secret)[1:-1] in (ROOT / "examples" / name).read_text(encoding="utf-8"), name


@pytest.mark.parametrize("name, args, var, path, scheme", RECEIVERS, ids=[r[0] for r in RECEIVERS])
def test_a_receiver_without_its_secret_refuses_to_start(name, args, var, path, scheme):
    port = free_port()
    proc, listening = start([sys.executable, f"examples/{name}", *args, "--port", str(port)], clean_env(), port)
    try:
        if listening:  # it must not be: here is what that lets anyone do
            d = deliver(f"http://127.0.0.1:{port}{path}", BUILT_IN[name], scheme)
            assert d.status != 200, f"{name} without {var} answered a delivery forged with its built-in secret 200"
    finally:
        code, out, err = stop(proc)
    assert not listening, f"{name} started without {var}"
    assert code == 2 and f"set {var}" in err and "--demo" in err, (code, out, err)
    assert "Traceback" not in err
    # Its own built-in secret, set by hand, is refused too.
    out = subprocess.run([sys.executable, f"examples/{name}", *args, "--port", str(port)], cwd=ROOT,
                         env=clean_env(**{var: BUILT_IN[name]}), capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "public secret" in out.stderr, (out.stdout, out.stderr)


@pytest.mark.parametrize("name, args, var, path, scheme", RECEIVERS, ids=[r[0] for r in RECEIVERS])
def test_a_receiver_with_its_secret_accepts_only_deliveries_signed_with_it(name, args, var, path, scheme):
    secret = webhooklite.generate_secret() if scheme == "standard" else f"real-{name}-secret"
    port = free_port()
    proc, listening = start([sys.executable, f"examples/{name}", *args, "--port", str(port)],
                            clean_env(**{var: secret}), port)
    try:
        assert listening
        url = f"http://127.0.0.1:{port}{path}"
        assert deliver(url, BUILT_IN[name], scheme).status == 401  # forged with the public secret
        assert deliver(url, secret, scheme).status == 200
    finally:
        code, out, err = stop(proc)
    assert code == 0 and "Traceback" not in err, (code, out, err)


@pytest.mark.parametrize("name, role", [("store_notify.py", "store"), ("signup_email.py", "signup")])
def test_a_sender_half_without_the_secret_refuses_to_send(name, role):
    port = free_port()
    with socket.create_server(("127.0.0.1", port)) as listener:  # would see the request if one were sent
        listener.settimeout(0.01)
        out = subprocess.run([sys.executable, f"examples/{name}", role, "--port", str(port)], cwd=ROOT,
                             env=clean_env(), capture_output=True, text=True, timeout=30)
        with pytest.raises(socket.timeout):
            listener.accept()
    assert out.returncode == 2 and "set WEBHOOK_SECRET" in out.stderr and "--demo" in out.stderr, out.stderr


def gunicorn_app_import(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import gunicorn_app"], cwd=ROOT / "examples",
                          env=clean_env(**env), capture_output=True, text=True, timeout=30)


def test_gunicorn_app_refuses_to_load_without_its_secret_and_its_file(tmp_path):
    out = gunicorn_app_import()
    assert out.returncode == 3 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.splitlines() == [
        "gunicorn_app: set WEBHOOK_SECRET to the signing secret (whsec_...)",
        "gunicorn_app: set WEBHOOK_DB to the dedupe file all workers share, e.g. /var/lib/myapp/webhooks-seen.db",
    ]
    secret = webhooklite.generate_secret()
    out = gunicorn_app_import(WEBHOOK_SECRET=secret)  # no database in the shared temp folder, or anywhere
    assert out.returncode == 3 and out.stderr.startswith("gunicorn_app: set WEBHOOK_DB"), out.stderr
    out = gunicorn_app_import(WEBHOOK_SECRET=BUILT_IN["gunicorn_app.py"], WEBHOOK_DB=str(tmp_path / "seen.db"))
    assert out.returncode == 3 and "the demo's public secret" in out.stderr, out.stderr
    out = gunicorn_app_import(WEBHOOK_SECRET=secret, WEBHOOK_DB=str(tmp_path / "no" / "such" / "folder.db"))
    assert out.returncode == 3 and "WEBHOOK_DB=" in out.stderr and "Traceback" not in out.stderr, out.stderr
    out = gunicorn_app_import(WEBHOOK_SECRET="whsec_short", WEBHOOK_DB=str(tmp_path / "seen.db"))
    assert out.returncode == 3 and out.stderr.startswith("gunicorn_app: WEBHOOK_SECRET: "), out.stderr
    out = gunicorn_app_import(WEBHOOK_SECRET=secret, WEBHOOK_DB=str(tmp_path / "seen.db"))
    assert out.returncode == 0 and out.stderr == "", out.stderr


@pytest.mark.skipif(importlib.util.find_spec("gunicorn") is None or os.name != "posix",
                    reason="gunicorn is not installed (pip install -r tests/requirements-ci.txt)")
def test_gunicorn_stops_when_the_app_has_no_secret():
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "--chdir", "examples", "--workers", "2",
            "--bind", f"127.0.0.1:{port}", "gunicorn_app:receiver"]
    proc, listening = start(argv, clean_env(), port)
    # gunicorn binds before its workers import the app: it may listen for a moment, and must
    # then stop (not restart workers for ever), having answered nothing with the built-in secret.
    try:
        if listening:
            d = deliver(f"http://127.0.0.1:{port}/", BUILT_IN["gunicorn_app.py"], "standard")
            assert d.status != 200, "gunicorn_app without WEBHOOK_SECRET answered a forged delivery 200"
        proc.wait(timeout=30)
    finally:
        code, out, err = stop(proc)
    assert code != 0 and "gunicorn_app: set WEBHOOK_SECRET" in err, (code, err[-2000:])
    assert err.count("Booting worker") <= 4, "gunicorn restarted the workers again and again"


# -- FastAPI: Stripe in, AsyncSender out, under a real uvicorn ----------------------------------


def test_fastapi_app_demo():
    pytest.importorskip("fastapi", reason="FastAPI is not installed (pip install -r tests/requirements-ci.txt)")
    pytest.importorskip("uvicorn", reason="uvicorn is not installed (pip install -r tests/requirements-ci.txt)")
    out = run("examples/fastapi_app.py", "--demo").stdout
    assert "orders service: order ABC123 paid, 25.00 USD" in out
    assert 'app answered 200, then 200 {"status":"duplicate"}' in out


def test_fastapi_app_under_uvicorn_receives_stripe_and_sends_onward():
    pytest.importorskip("fastapi", reason="FastAPI is not installed (pip install -r tests/requirements-ci.txt)")
    pytest.importorskip("uvicorn", reason="uvicorn is not installed (pip install -r tests/requirements-ci.txt)")
    stripe_secret, orders_secret = "whsec_under_uvicorn", webhooklite.generate_secret()
    orders = webhooklite.Receiver(orders_secret)
    paid, failures = [], [3]

    @orders.on("order.paid")
    def order_paid(event):
        if failures[0]:
            failures[0] -= 1
            # Down for the AsyncSender's three attempts: the app's handler raises, its answer is 500.
            raise RuntimeError("orders database down")
        paid.append((event.id, event["order_id"], event["amount"]))

    port = free_port()
    with orders.start() as orders_server:
        env = clean_env(STRIPE_WEBHOOK_SECRET=stripe_secret, ORDERS_WEBHOOK_URL=orders_server.url,
                        ORDERS_WEBHOOK_SECRET=orders_secret, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            wait_for_port(port, proc, timeout=15, output=True)
            url = f"http://127.0.0.1:{port}/webhooks/stripe"
            sys.path.insert(0, str(ROOT / "examples"))
            try:
                import fastapi_app
            finally:
                sys.path.pop(0)
            body = fastapi_app.stripe_event("ABC123")
            with webhooklite.Sender(url, stripe_secret, scheme="stripe", retry=webhooklite.Retry(attempts=1)) as stripe:
                first = stripe.post(body)   # the orders service is down: 500, so Stripe retries
                second = stripe.post(body)  # Stripe's retry: delivered onward
                third = stripe.post(body)   # another retry: answered, not run again
                forged = webhooklite.Sender(url, "whsec_not_stripes", scheme="stripe").post(body)
        finally:
            proc.terminate()
            out, err = proc.communicate(timeout=10)
    assert first.status == 500 and second.status == 200, (first, second, err)
    assert b"duplicate" in third.response_body
    assert forged.status == 401
    assert paid == [("paid-evt_demo_ABC123", "ABC123", 25.0)]


def test_fastapi_app_refuses_to_start_without_its_secrets():
    pytest.importorskip("fastapi", reason="FastAPI is not installed (pip install -r tests/requirements-ci.txt)")
    pytest.importorskip("uvicorn", reason="uvicorn is not installed (pip install -r tests/requirements-ci.txt)")
    out = subprocess.run(
        [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--port", str(free_port())],
        cwd=ROOT, env=clean_env(PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=30,
    )
    assert out.returncode != 0 and "set STRIPE_WEBHOOK_SECRET" in out.stderr + out.stdout


def test_store_notify_with_an_inbox_answers_202_then_prints_the_order(tmp_path):
    out = run("examples/store_notify.py", "--inbox", str(tmp_path / "orders.db")).stdout.splitlines()
    # The handler runs beside the answer, so either line may come first.
    assert len(out) == 2 and any(line.startswith("store: notifier answered 202 in ") for line in out), out
    assert "New order! Item: Blue T-Shirt, $25. Customer: Jane D." in out
    inbox = webhooklite.Inbox(str(tmp_path / "orders.db"))
    assert inbox.stats()["done"] == 1
    inbox.close()
