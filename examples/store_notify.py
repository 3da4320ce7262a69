"""The brief's story: a store's payment tool tells a notifier about each sale.

    python3 examples/store_notify.py                   # both halves in one process
    python3 examples/store_notify.py notifier --demo   # terminal 1: wait for orders on :8000
    python3 examples/store_notify.py store --demo      # terminal 2: a customer buys a T-shirt
    python3 examples/store_notify.py --inbox orders.db # the notifier answers 202 at once, prints after

The store (App A) signs a ``payment.completed`` event and POSTs it; the notifier
(App B) checks the signature and prints the order.

The two halves share a secret. On its own, each half talks to a port other
programs can reach, so it needs ``WEBHOOK_SECRET`` (the same in both
terminals; ``python3 -m webhooklite secret`` makes one) and refuses to run
without it; ``--demo`` uses the built-in secret instead, which is written
here for anyone to sign with. With no role, both halves run in this one
process over a loopback port that is open for a moment: that is the demo
itself, so the built-in secret is used without ``--demo``.

``--inbox FILE`` gives the notifier a durable inbox (a sqlite file): each signed
order is stored and answered ``202`` before the notifier's handler runs, and the
handler runs right after, in the background (or later, after a crash: nothing
answered 202 is lost). Worth it when handling is slow or must happen exactly once
per handler; for a one-line print like this one, the plain receiver is enough.
"""
import argparse
import os
import sys
import threading
from pathlib import Path
from typing import Optional

try:
    import webhooklite
except ImportError:  # run from a clone without installing: use the folder next door
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import webhooklite

#: The demo's secret: public, so for the demo (and --demo) only. A real one comes from
#: webhooklite.generate_secret() (or `python -m webhooklite secret`) and lives in WEBHOOK_SECRET.
DEMO_SECRET = "whsec_c3RvcmUtbm90aWZ5LWRlbW8tc2VjcmV0LTMyYnl0ZXM="

ORDER = {
    "order_id": "ABC123",
    "customer": "Jane D.",
    "item": "Blue T-Shirt",
    "amount": 25.00,
}


def money(amount: float) -> str:
    """$25 for 25.00, $25.50 for 25.5."""
    text = f"{amount:,.2f}"
    return "$" + (text[:-3] if text.endswith(".00") else text)


def say(line: str) -> None:
    """Print one whole line at once: with an inbox the handler prints from another thread."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def make_notifier(secret: str, inbox: Optional[str] = None) -> webhooklite.Receiver:
    """App B: the little notification tool (with a durable inbox when ``inbox`` names a file)."""
    receiver = webhooklite.Receiver(secret, inbox=webhooklite.Inbox(inbox) if inbox else None)

    @receiver.on("payment.completed")
    def new_order(event: webhooklite.Event) -> None:
        say(f"New order! Item: {event['item']}, {money(event['amount'])}. Customer: {event['customer']}")

    return receiver


def store(url: str, secret: str) -> int:
    """App A: the store's payment tool sends the sale."""
    delivery = webhooklite.send(url, "payment.completed", ORDER, secret=secret)
    if not delivery.ok:
        print(f"store: could not tell the notifier: {delivery.error}", file=sys.stderr)
        return 1
    say(f"store: notifier answered {delivery.status} in {delivery.elapsed * 1000:.0f} ms")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", nargs="?", choices=["notifier", "store"], help="run one half only")
    parser.add_argument("--port", type=int, default=8000, help="notifier port (default 8000)")
    parser.add_argument("--url", default=None, help="where the store sends (default http://127.0.0.1:PORT/)")
    parser.add_argument("--demo", action="store_true", help="use the built-in secret (public: for trying it only)")
    parser.add_argument("--inbox", metavar="FILE", help="the notifier stores each order in this sqlite file and "
                        "answers 202 before handling it")
    args = parser.parse_args()
    secret = DEMO_SECRET if args.demo or args.role is None else os.environ.get("WEBHOOK_SECRET", "")
    if not secret:
        parser.error("set WEBHOOK_SECRET to the secret the store and the notifier share (or try --demo, "
                     "which uses a built-in one)")
    if secret == DEMO_SECRET and not (args.demo or args.role is None):
        parser.error("WEBHOOK_SECRET is the demo's public secret: use your own (or --demo)")

    if args.role == "notifier":
        try:
            notifier = make_notifier(secret, args.inbox)
        except ValueError as e:  # a malformed whsec_ secret
            parser.error(f"WEBHOOK_SECRET: {e}")
        print(f"notifier: waiting for orders on http://127.0.0.1:{args.port}/ (Ctrl-C to stop)", flush=True)
        notifier.serve(port=args.port)
        return 0
    if args.role == "store":
        try:
            return store(args.url or f"http://127.0.0.1:{args.port}/", secret)
        except ValueError as e:
            parser.error(f"WEBHOOK_SECRET: {e}")

    # Both halves: the notifier on a free port in the background, then one sale.
    notified = threading.Event()
    receiver = make_notifier(secret, args.inbox)
    receiver.on("payment.completed", lambda event: notified.set())
    with receiver.start(port=0) as server:
        status = store(server.url, secret)
        notified.wait(10)  # with an inbox the handler runs after the answer
    return status if notified.is_set() or status else 1


if __name__ == "__main__":
    sys.exit(main())
