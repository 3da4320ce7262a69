"""Receive GitHub webhooks: new issues and pushes.

    python3 examples/github_receiver.py --demo     # GitHub's deliveries, signed like GitHub signs them
    GITHUB_WEBHOOK_SECRET=... python3 examples/github_receiver.py --port 8000

Without ``--demo`` it needs the webhook's secret in ``GITHUB_WEBHOOK_SECRET``
and refuses to start without it: the demo's built-in secret is GitHub's
documentation example, which anyone can sign a forged delivery with.

On GitHub: repository Settings -> Webhooks -> Add webhook, payload URL
``https://<your host>/github``, content type ``application/json`` (the form
encoding works too), the same secret, events "Issues" and "Pushes".
GitHub signs the raw body: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256>``;
``X-GitHub-Event`` names the event and ``X-GitHub-Delivery`` is its id, the
same when you press "Redeliver", so a redelivery is answered without
running the handlers again.
"""
import argparse
import hashlib
import hmac
import json
import logging
import os
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Tuple

try:
    import webhooklite
except ImportError:  # run from a clone without installing: use the folder next door
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import webhooklite

#: The demo's secret (GitHub's documentation example): public, so for --demo only.
DEMO_SECRET = "It's a Secret to Everybody"


def make_receiver(secret: str) -> webhooklite.Receiver:
    """The app that listens to GitHub."""
    receiver = webhooklite.Receiver(secret, scheme="github", path="/github")

    @receiver.on("issues.opened")  # X-GitHub-Event "issues" + the body's "action"
    def issue_opened(event: webhooklite.Event) -> None:
        issue, repo = event["issue"], event["repository"]
        print(f"issue #{issue['number']} opened in {repo['full_name']} by {issue['user']['login']}: {issue['title']}",
              flush=True)

    @receiver.on("push")  # pushes have no action
    def pushed(event: webhooklite.Event) -> None:
        branch = event["ref"].rpartition("/")[2]
        commits = event["commits"]
        head = event["head_commit"]
        print(
            f"push to {event['repository']['full_name']} {branch} by {event['pusher']['name']}: "
            f"{len(commits)} commit{'s' if len(commits) != 1 else ''}, head {head['id'][:7]} "
            f"{head['message'].splitlines()[0]!r}",
            flush=True,
        )

    return receiver


# -- the demo: deliveries shaped like GitHub's, signed like GitHub signs them ------

USER = {"login": "janedoe", "id": 583231, "node_id": "MDQ6VXNlcjU4MzIzMQ==", "type": "User", "site_admin": False,
        "avatar_url": "https://avatars.githubusercontent.com/u/583231?v=4", "html_url": "https://github.com/janedoe"}
REPO = {
    "id": 1296269, "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5", "name": "shop", "full_name": "octo-org/shop",
    "private": False, "owner": {"login": "octo-org", "id": 6811672, "type": "Organization"},
    "html_url": "https://github.com/octo-org/shop", "default_branch": "main",
}


def issues_opened() -> dict:
    return {
        "action": "opened",
        "issue": {
            "url": "https://api.github.com/repos/octo-org/shop/issues/42",
            "html_url": "https://github.com/octo-org/shop/issues/42",
            "id": 1801155921, "node_id": "I_kwDOABII585rWJ1R", "number": 42,
            "title": "Blue T-Shirt shows $0 at checkout",
            "user": USER, "labels": [], "state": "open", "locked": False, "assignee": None, "assignees": [],
            "comments": 0, "created_at": "2026-04-14T08:31:02Z", "updated_at": "2026-04-14T08:31:02Z",
            "closed_at": None, "author_association": "MEMBER",
            "body": "Steps: add the Blue T-Shirt to the cart, open checkout. Expected $25.",
        },
        "repository": REPO,
        "sender": USER,
    }


def push() -> dict:
    commit = {
        "id": "9b1e7c4a2f0d8e6b5a4c3d2e1f0a9b8c7d6e5f4a", "tree_id": "3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b",
        "distinct": True, "message": "Fix price rounding at checkout\n\nFixes #42",
        "timestamp": "2026-04-14T10:02:11+02:00",
        "url": "https://github.com/octo-org/shop/commit/9b1e7c4a2f0d8e6b5a4c3d2e1f0a9b8c7d6e5f4a",
        "author": {"name": "Jane Doe", "email": "jane@example.com", "username": "janedoe"},
        "committer": {"name": "Jane Doe", "email": "jane@example.com", "username": "janedoe"},
        "added": [], "removed": [], "modified": ["shop/checkout.py"],
    }
    return {
        "ref": "refs/heads/main",
        "before": "5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e",
        "after": commit["id"],
        "repository": REPO,
        "pusher": {"name": "janedoe", "email": "jane@example.com"},
        "sender": USER,
        "created": False, "deleted": False, "forced": False, "base_ref": None,
        "compare": "https://github.com/octo-org/shop/compare/5f4e3d2c1b0a...9b1e7c4a2f0d",
        "commits": [commit],
        "head_commit": commit,
    }


def deliver_like_github(url: str, event: str, payload: dict, delivery: str,
                        secret: str = DEMO_SECRET) -> Tuple[int, bytes]:
    """POST ``payload`` the way GitHub does; return the answer's status and body."""
    body = json.dumps(payload, indent=2).encode()  # GitHub's bytes are its own: verify them as they come
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/7c3f1e2",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Hook-ID": "460211234",
        "X-GitHub-Hook-Installation-Target-Type": "repository",
        "X-GitHub-Hook-Installation-Target-ID": str(REPO["id"]),
        "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": signature,
    })
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def demo() -> int:
    with make_receiver(DEMO_SECRET).start(port=0) as server:
        issue_delivery = str(uuid.uuid4())
        answers = [
            ("issues", deliver_like_github(server.url, "issues", issues_opened(), issue_delivery)),
            ("push", deliver_like_github(server.url, "push", push(), str(uuid.uuid4()))),
            ("issues (redelivered)", deliver_like_github(server.url, "issues", issues_opened(), issue_delivery)),
            ("push (wrong secret)", deliver_like_github(server.url, "push", push(), str(uuid.uuid4()), "guess")),
        ]
    for what, (status, body) in answers:
        print(f"GitHub delivery {what}: {status} {body.decode()}")
    return 0 if [status for _, (status, _) in answers] == [200, 200, 200, 401] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", action="store_true", help="send GitHub-style deliveries to ourselves and exit")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    args = parser.parse_args()
    # Refusals say why in the log; serving also logs each request (webhooklite.access).
    logging.basicConfig(level=logging.WARNING if args.demo else logging.INFO, format="%(name)s: %(message)s")
    if args.demo:
        return demo()
    secret = os.environ.get("GITHUB_WEBHOOK_SECRET")
    if not secret:
        parser.error("set GITHUB_WEBHOOK_SECRET to the webhook's secret (or try --demo, which uses a built-in one)")
    if secret == DEMO_SECRET:
        parser.error("GITHUB_WEBHOOK_SECRET is the demo's public secret: use the real one (or --demo)")
    receiver = make_receiver(secret)
    print(f"listening for GitHub on http://{args.host}:{args.port}/github (Ctrl-C to stop)", flush=True)
    receiver.serve(args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
