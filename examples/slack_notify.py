"""Post a message to a Slack channel through an incoming webhook.

    python3 examples/slack_notify.py --demo                      # a local stand-in for Slack prints what it got
    SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T000/B000/XXXX \\
        python3 examples/slack_notify.py "New order! Item: Blue T-Shirt, \\$25. Customer: Jane D."

Create the URL in Slack: your app -> Incoming Webhooks -> Add New Webhook to
Workspace. Slack wants ``{"text": ...}`` as JSON, unsigned (the URL itself is
the secret: keep it out of code and logs), and answers ``ok``. Discord's and
Teams' incoming webhooks work the same way with their own JSON.
``Sender.post()`` sends the JSON as is, retries 429 (honouring Retry-After)
and 5xx, and never prints the URL's path.
"""
import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

try:
    import webhooklite
except ImportError:  # run from a clone without installing: use the folder next door
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import webhooklite

MESSAGE = "New order! Item: Blue T-Shirt, $25. Customer: Jane D."


def notify(url: str, text: str) -> int:
    """Post ``text`` to the Slack incoming webhook at ``url``; 0 if Slack took it."""
    with webhooklite.Sender(url, retry=webhooklite.Retry(attempts=3, backoff=1.0)) as slack:
        delivery = slack.post({"text": text})
    if not delivery.ok:
        print(f"Slack did not take it: {delivery.error}", file=sys.stderr)
        return 1
    print(f"Slack answered {delivery.status} {delivery.response_body.decode(errors='replace')!r}", flush=True)
    return 0


class StandIn(BaseHTTPRequestHandler):
    """Answers like Slack's incoming webhooks: 200 ``ok``, or 400 ``invalid_payload``."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            text = json.loads(body)["text"]
            status, answer = 200, b"ok"
            print(f"slack stand-in got on {self.path}: {text}", flush=True)
        except (ValueError, KeyError, TypeError):
            status, answer = 400, b"invalid_payload"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def demo(text: str) -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        return notify(f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/XXXX", text)
    finally:
        server.shutdown()
        server.server_close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text", nargs="?", default=MESSAGE, help="the message (default: a new order)")
    parser.add_argument("--demo", action="store_true", help="post to a local stand-in for Slack")
    parser.add_argument("--url", default=os.environ.get("SLACK_WEBHOOK_URL"),
                        help="the incoming-webhook URL (default: $SLACK_WEBHOOK_URL)")
    args = parser.parse_args()
    if args.demo:
        return demo(args.text)
    if not args.url:
        parser.error("give --url or set SLACK_WEBHOOK_URL (or try --demo)")
    return notify(args.url, args.text)


if __name__ == "__main__":
    sys.exit(main())
