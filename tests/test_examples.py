"""Every example runs as its docstring says (`--demo`, or no arguments), exits 0 and prints what it did.

Each runs as a subprocess from the repository root, without webhooklite
installed (the examples fall back to the folder next door), as on a fresh clone.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args, timeout=30):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WEBHOOK_SECRET", "WEBHOOK_DB")}
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
