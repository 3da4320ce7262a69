"""A Receiver under gunicorn or waitress: several worker processes, one shared dedupe store.

A Receiver is a WSGI application, so any WSGI server runs it unchanged. With
several worker processes, a retried message may land on another worker than
the first try: ``SQLiteStore`` (one file, shared by every worker on the host)
makes sure it is still handled once. From the repository root:

    export WEBHOOK_SECRET=whsec_...  WEBHOOK_DB=/var/lib/myapp/webhooks-seen.db

    # gunicorn, sync workers (one request at a time per process):
    gunicorn --chdir examples --workers 4 --bind 127.0.0.1:8000 gunicorn_app:receiver
    # gunicorn, threaded workers:
    gunicorn --chdir examples --workers 2 --worker-class gthread --threads 8 --bind 127.0.0.1:8000 gunicorn_app:receiver
    # waitress (one process, threads; also on Windows):
    waitress-serve --listen=127.0.0.1:8000 --threads 8 examples.gunicorn_app:receiver

    python3 examples/gunicorn_app.py --demo    # no gunicorn needed: two stdlib WSGI worker processes

Put them behind a reverse proxy (nginx, Caddy) for TLS on a public port.

Both variables are required; imported without them the module prints which
one is missing and exits (status 3, which gunicorn reads as "worker failed to
boot" and stops, instead of starting workers again and again). No built-in
secret: one written here would let anyone who read it forge a delivery. No
default WEBHOOK_DB either: the file is the workers' shared memory of handled
ids, so where it lives is a deployment decision (a local disk, not NFS; kept
across restarts; writable by the workers' user only), and a fixed name in the
shared temp folder is none of that: any local user could create it first, or
read and edit it. Only ``--demo`` has a secret and a (fresh, private) file
of its own.
"""
import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List

try:
    import webhooklite
except ImportError:  # run from a clone without installing: use the folder next door
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import webhooklite

#: The demo's secret: written here for everyone to read, so for --demo only.
DEMO_SECRET = "whsec_Z3VuaWNvcm4tYXBwLWRlbW8tc2VjcmV0LTMyYnl0ZXM="


def make_receiver(secret: str, db: str) -> webhooklite.Receiver:
    """The app: a Receiver whose dedupe memory is the sqlite file ``db``, shared by every worker."""
    receiver = webhooklite.Receiver(secret, store=webhooklite.SQLiteStore(db))

    @receiver.on("payment.completed")
    def new_order(event: webhooklite.Event) -> None:
        print(f"worker {os.getpid()}: New order! Item: {event['item']}. Customer: {event['customer']}", flush=True)

    return receiver


def from_environment() -> webhooklite.Receiver:
    """The app as WEBHOOK_SECRET and WEBHOOK_DB configure it; without them, say so and exit."""
    secret, db = os.environ.get("WEBHOOK_SECRET"), os.environ.get("WEBHOOK_DB")
    problems: List[str] = []
    if not secret:
        problems.append("set WEBHOOK_SECRET to the signing secret (whsec_...)")
    elif secret == DEMO_SECRET:
        problems.append("WEBHOOK_SECRET is the demo's public secret: use your own (python3 -m webhooklite secret)")
    if not db:
        problems.append("set WEBHOOK_DB to the dedupe file all workers share, e.g. /var/lib/myapp/webhooks-seen.db")
    if not problems:
        try:
            return make_receiver(secret or "", db or "")
        except ValueError as e:  # a malformed whsec_ secret
            problems.append(f"WEBHOOK_SECRET: {e}")
        except (OSError, sqlite3.Error) as e:  # a folder that is not there, a file that is not sqlite
            problems.append(f"WEBHOOK_DB={db}: {e}")
    for problem in problems:
        print(f"gunicorn_app: {problem}", file=sys.stderr, flush=True)
    raise SystemExit(3)  # gunicorn: "worker failed to boot", so it stops instead of restarting workers


if __name__ != "__main__":  # imported by gunicorn or waitress: gunicorn_app:receiver
    receiver = from_environment()


# -- the demo: two worker processes as gunicorn would run them, with the standard library --


def worker() -> None:
    """Serve ``receiver`` with wsgiref on a free port; print the URL first."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    app = make_receiver(os.environ["WEBHOOK_SECRET"], os.environ["WEBHOOK_DB"])  # from demo() below
    server = make_server("127.0.0.1", 0, app, server_class=ThreadingWSGIServer, handler_class=Quiet)
    print(f"http://127.0.0.1:{server.server_address[1]}/", flush=True)
    server.serve_forever()


def demo() -> int:
    from webhooklite.events import encode_event
    from webhooklite.signing import new_message_id

    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, WEBHOOK_SECRET=DEMO_SECRET, WEBHOOK_DB=os.path.join(tmp, "webhooks-seen.db"))
        workers, urls = [], []
        try:
            for _ in range(2):
                w = subprocess.Popen([sys.executable, __file__, "--worker"], env=env, stdout=subprocess.PIPE, text=True)
                workers.append(w)
                urls.append(w.stdout.readline().strip())  # type: ignore[union-attr]
            if not all(urls):
                print("a worker did not start", file=sys.stderr)
                return 1
            # One message, tried on worker 1, then retried (same id) on worker 2.
            body = encode_event("payment.completed", {"order_id": "ABC123", "customer": "Jane D.", "item": "Blue T-Shirt"})
            msg_id = new_message_id()
            answers = []
            for n, url in enumerate(urls, 1):
                with webhooklite.Sender(url, DEMO_SECRET, timeout=5, retry=webhooklite.Retry(attempts=1)) as sender:
                    d = sender.deliver(body, msg_id=msg_id, event="payment.completed")
                print(f"try {n} of {msg_id} -> worker {n}: {d.status} {d.response_body.decode()}", flush=True)
                answers.append(d.status)
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                out, _ = w.communicate(timeout=5)
                print(out, end="", flush=True)
    return 0 if answers == [200, 200] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", action="store_true", help="one message, retried on another worker process")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return 0
    if args.demo:
        return demo()
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
