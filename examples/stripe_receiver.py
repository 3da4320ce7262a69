"""Receive Stripe webhooks: a payment succeeded, a Checkout session completed.

    python3 examples/stripe_receiver.py --demo     # Stripe's events, signed like Stripe signs them
    STRIPE_WEBHOOK_SECRET=whsec_... python3 examples/stripe_receiver.py --port 8000

Without ``--demo`` it needs the endpoint's signing secret in
``STRIPE_WEBHOOK_SECRET`` and refuses to start without it: the demo's
built-in secret is in this file, so anyone could sign a forged event with it.

On Stripe: Developers -> Webhooks -> Add endpoint ``https://<your host>/stripe``
with the events ``payment_intent.succeeded`` and ``checkout.session.completed``,
then copy its signing secret (``whsec_...``, used whole). Locally, the Stripe CLI
forwards events: ``stripe listen --forward-to localhost:8000/stripe``.
Stripe signs ``"{t}.{raw body}"``: ``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256>``;
a retry of an event carries the same ``evt_`` id, which is answered without
running the handlers again.
"""
import argparse
import hashlib
import hmac
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Tuple

try:
    import webhooklite
except ImportError:  # run from a clone without installing: use the folder next door
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import webhooklite

#: The demo's secret: written here for everyone to read, so for --demo only.
DEMO_SECRET = "whsec_5f8c1e2d3b4a69788766554433221100aabbccdd"


def money(cents: int, currency: str) -> str:
    """2500, "usd" -> "$25.00 USD" (two-decimal currencies)."""
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get(currency, "")
    return f"{symbol}{cents / 100:,.2f} {currency.upper()}"


def make_receiver(secret: str) -> webhooklite.Receiver:
    """The app that listens to Stripe."""
    receiver = webhooklite.Receiver(secret, scheme="stripe", path="/stripe")

    @receiver.on("payment_intent.succeeded")  # the body's "type"
    def paid(event: webhooklite.Event) -> None:
        intent = event["data"]["object"]
        print(f"payment {intent['id']} succeeded: {money(intent['amount_received'], intent['currency'])} "
              f"for order {intent['metadata']['order_id']}", flush=True)

    @receiver.on("checkout.session.completed")
    def checked_out(event: webhooklite.Event) -> None:
        session = event["data"]["object"]
        customer = session["customer_details"]
        print(f"checkout {session['id']} completed by {customer['name']} <{customer['email']}>: "
              f"{money(session['amount_total'], session['currency'])}, {session['payment_status']}", flush=True)

    return receiver


# -- the demo: events shaped like Stripe's, signed like Stripe signs them -------------

ORDER = {"order_id": "ABC123", "item": "Blue T-Shirt"}


def payment_intent_succeeded(created: int) -> dict:
    return {
        "id": "evt_3PqR8sLkdIwHu7ix0aB1cD2e",
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {
            "object": {
                "id": "pi_3PqR8sLkdIwHu7ix0Zx9Yw8V", "object": "payment_intent",
                "amount": 2500, "amount_capturable": 0, "amount_received": 2500, "currency": "usd",
                "capture_method": "automatic", "confirmation_method": "automatic", "created": created - 2,
                "customer": "cus_QhN2aB3cD4eF5g", "description": "Blue T-Shirt", "livemode": False,
                "latest_charge": "ch_3PqR8sLkdIwHu7ix0Vu7Ts6R", "metadata": ORDER,
                "payment_method": "pm_1PqR8rLkdIwHu7ixQp5On4Ml", "payment_method_types": ["card"],
                "receipt_email": "jane@example.com", "status": "succeeded",
            }
        },
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": "req_Kj7Hg6Fd5Sa4Qw", "idempotency_key": "6a1c4c1e-9f0a-4b8e-a1f2-2d3c4b5a6978"},
        "type": "payment_intent.succeeded",
    }


def checkout_session_completed(created: int) -> dict:
    return {
        "id": "evt_1PqR8tLkdIwHu7ixMn3Bv2Cx",
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {
            "object": {
                "id": "cs_test_a1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuV", "object": "checkout.session",
                "amount_subtotal": 2500, "amount_total": 2500, "currency": "usd",
                "customer": "cus_QhN2aB3cD4eF5g",
                "customer_details": {"email": "jane@example.com", "name": "Jane D.", "phone": None,
                                     "address": {"country": "US", "postal_code": "94107"}},
                "livemode": False, "metadata": ORDER, "mode": "payment",
                "payment_intent": "pi_3PqR8sLkdIwHu7ix0Zx9Yw8V", "payment_status": "paid", "status": "complete",
                "success_url": "https://shop.example.com/thanks", "url": None,
            }
        },
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "checkout.session.completed",
    }


def deliver_like_stripe(url: str, event: dict, secret: str = DEMO_SECRET) -> Tuple[int, bytes]:
    """POST ``event`` the way Stripe does; return the answer's status and body."""
    body = json.dumps(event, indent=2).encode()  # Stripe's bytes are its own: verify them as they come
    t = int(time.time())
    v1 = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "Cache-Control": "no-cache",
        "Stripe-Signature": f"t={t},v1={v1}",
    })
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def demo() -> int:
    now = int(time.time())
    with make_receiver(DEMO_SECRET).start(port=0) as server:
        answers = [
            ("payment_intent.succeeded", deliver_like_stripe(server.url, payment_intent_succeeded(now))),
            ("checkout.session.completed", deliver_like_stripe(server.url, checkout_session_completed(now))),
            ("payment_intent.succeeded (retried)", deliver_like_stripe(server.url, payment_intent_succeeded(now))),
            ("checkout.session.completed (wrong secret)",
             deliver_like_stripe(server.url, checkout_session_completed(now), "whsec_guess")),
        ]
    for what, (status, body) in answers:
        print(f"Stripe event {what}: {status} {body.decode()}")
    return 0 if [status for _, (status, _) in answers] == [200, 200, 200, 401] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", action="store_true", help="send Stripe-style events to ourselves and exit")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    args = parser.parse_args()
    # Refusals say why in the log; serving also logs each request (webhooklite.access).
    logging.basicConfig(level=logging.WARNING if args.demo else logging.INFO, format="%(name)s: %(message)s")
    if args.demo:
        return demo()
    secret = os.environ.get("STRIPE_WEBHOOK_SECRET")
    if not secret:
        parser.error("set STRIPE_WEBHOOK_SECRET to the endpoint's signing secret (whsec_...), or try --demo, "
                     "which uses a built-in one")
    if secret == DEMO_SECRET:
        parser.error("STRIPE_WEBHOOK_SECRET is the demo's public secret: use the real one (or --demo)")
    receiver = make_receiver(secret)
    print(f"listening for Stripe on http://{args.host}:{args.port}/stripe (Ctrl-C to stop)", flush=True)
    receiver.serve(args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
