"""The brief's story: a store's payment tool tells a notifier about each sale.

    python3 examples/store_notify.py            # both halves in one process
    python3 examples/store_notify.py notifier   # terminal 1: wait for orders on :8000
    python3 examples/store_notify.py store      # terminal 2: a customer buys a T-shirt

The store (App A) signs a ``payment.completed`` event and POSTs it; the notifier
(App B) checks the signature and prints the order.
"""
import argparse
import os
import sys
import threading
from pathlib import Path

try:
    import webhooklite
except ImportError:  # run from a clone without installing: use the folder next door
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import webhooklite

# Both apps know this secret. A real one comes from webhooklite.generate_secret()
# (or `python -m webhooklite secret`) and lives in an environment variable.
SECRET = os.environ.get("WEBHOOK_SECRET", "whsec_c3RvcmUtbm90aWZ5LWRlbW8tc2VjcmV0LTMyYnl0ZXM=")

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


def make_notifier() -> webhooklite.Receiver:
    """App B: the little notification tool."""
    receiver = webhooklite.Receiver(SECRET)

    @receiver.on("payment.completed")
    def new_order(event: webhooklite.Event) -> None:
        print(
            f"New order! Item: {event['item']}, {money(event['amount'])}. Customer: {event['customer']}",
            flush=True,
        )

    return receiver


def store(url: str) -> int:
    """App A: the store's payment tool sends the sale."""
    delivery = webhooklite.send(url, "payment.completed", ORDER, secret=SECRET)
    if not delivery.ok:
        print(f"store: could not tell the notifier: {delivery.error}", file=sys.stderr)
        return 1
    print(f"store: notifier answered {delivery.status} in {delivery.elapsed * 1000:.0f} ms", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", nargs="?", choices=["notifier", "store"], help="run one half only")
    parser.add_argument("--port", type=int, default=8000, help="notifier port (default 8000)")
    parser.add_argument("--url", default=None, help="where the store sends (default http://127.0.0.1:PORT/)")
    args = parser.parse_args()

    if args.role == "notifier":
        print(f"notifier: waiting for orders on http://127.0.0.1:{args.port}/ (Ctrl-C to stop)", flush=True)
        make_notifier().serve(port=args.port)
        return 0
    if args.role == "store":
        return store(args.url or f"http://127.0.0.1:{args.port}/")

    # Both halves: the notifier on a free port in the background, then one sale.
    notified = threading.Event()
    receiver = make_notifier()
    receiver.on("payment.completed", lambda event: notified.set())
    with receiver.start(port=0) as server:
        status = store(server.url)
    return status if notified.is_set() or status else 1


if __name__ == "__main__":
    sys.exit(main())
