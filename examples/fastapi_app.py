"""FastAPI: receive a Stripe-signed event with an async handler, and send a webhook onward with AsyncSender.

    python3 examples/fastapi_app.py --demo          # needs fastapi and uvicorn (pip install fastapi uvicorn)
    STRIPE_WEBHOOK_SECRET=whsec_... ORDERS_WEBHOOK_URL=https://... ORDERS_WEBHOOK_SECRET=whsec_... \\
        uvicorn examples.fastapi_app:app --port 8000

The app is a FastAPI app with one webhook route, ``POST /webhooks/stripe``,
served by ``receiver.asgi``: the signature is checked over the raw body, and the
``async def`` handler runs on uvicorn's event loop. When Stripe says a payment
succeeded, the handler tells the orders service with an ``AsyncSender``
(kept-alive connections, retries, Standard Webhooks signatures) without
blocking the loop. If the orders service cannot be reached, the handler raises:
the answer is 500, and Stripe retries the event later (the same ``evt_`` id;
once the handler succeeds, a retry is answered without running it again).

Without ``--demo`` it needs ``STRIPE_WEBHOOK_SECRET``, ``ORDERS_WEBHOOK_URL`` and
``ORDERS_WEBHOOK_SECRET`` and refuses to start without them: the demo's secrets
are written in this file, so anyone could sign a forged event with them.
``--demo`` runs the whole story on free loopback ports: uvicorn serves the app,
a stand-in orders service listens, and a Stripe-shaped event is sent to the app.
"""
import argparse
import contextlib
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Optional

try:
    import webhooklite
except ImportError:  # run from a clone without installing: use the folder next door
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import webhooklite

#: The demo's secrets: written here for everyone to read, so for --demo only.
DEMO_STRIPE_SECRET = "whsec_fastapi_demo_stripe_secret"
DEMO_ORDERS_SECRET = "whsec_ZmFzdGFwaS1kZW1vLW9yZGVycy1zZWNyZXQtMzJi"


def make_app(stripe_secret: str, orders_url: str, orders_secret: str) -> Any:
    """The FastAPI app: Stripe in, the orders service out."""
    from fastapi import FastAPI

    receiver = webhooklite.Receiver(stripe_secret, scheme="stripe")
    orders = webhooklite.AsyncSender(orders_url, orders_secret, timeout=5)

    @receiver.on("payment_intent.succeeded")
    async def paid(event: webhooklite.Event) -> None:
        intent = event["data"]["object"]
        delivery = await orders.send(
            "order.paid",
            {"order_id": intent["metadata"]["order_id"], "amount": intent["amount_received"] / 100,
             "currency": intent["currency"], "stripe_event": event.id},
            id=f"paid-{event.id}",  # the same id on Stripe's retries: the orders service dedupes
        )
        delivery.raise_for_status()  # not delivered: 500, and Stripe retries the event
        print(f"payment {intent['id']} succeeded: told the orders service ({delivery.status})", flush=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        yield
        await orders.close()  # its kept-alive connections, on the way out

    app = FastAPI(lifespan=lifespan)
    app.add_route("/webhooks/stripe", receiver.asgi, methods=["POST"])

    @app.get("/health")
    async def health() -> Dict[str, str]:
        return {"status": "ok"}

    return app


def _from_environment() -> Any:
    missing = [v for v in ("STRIPE_WEBHOOK_SECRET", "ORDERS_WEBHOOK_URL", "ORDERS_WEBHOOK_SECRET") if not os.environ.get(v)]
    if missing:
        raise SystemExit(
            f"set {', '.join(missing)} (or run `python3 examples/fastapi_app.py --demo`): the built-in demo "
            "secrets are public, so a forged event signed with them would be accepted"
        )
    return make_app(os.environ["STRIPE_WEBHOOK_SECRET"], os.environ["ORDERS_WEBHOOK_URL"],
                    os.environ["ORDERS_WEBHOOK_SECRET"])


def stripe_event(order_id: str) -> bytes:
    """A payment_intent.succeeded event shaped like Stripe's."""
    return webhooklite.events.encode_json({
        "id": f"evt_demo_{order_id}", "object": "event", "type": "payment_intent.succeeded",
        "data": {"object": {"id": f"pi_demo_{order_id}", "object": "payment_intent", "amount_received": 2500,
                            "currency": "usd", "metadata": {"order_id": order_id}}},
    })


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo() -> int:
    try:
        import uvicorn
    except ImportError:
        print("the demo needs FastAPI and uvicorn: pip install fastapi uvicorn", file=sys.stderr)
        return 2
    got = threading.Event()
    orders = webhooklite.Receiver(DEMO_ORDERS_SECRET)

    @orders.on("order.paid")
    def order_paid(event: webhooklite.Event) -> None:
        print(f"orders service: order {event['order_id']} paid, {event['amount']:.2f} {event['currency'].upper()}",
              flush=True)
        got.set()

    with orders.start() as orders_server:
        port = _free_port()
        config = uvicorn.Config(make_app(DEMO_STRIPE_SECRET, orders_server.url, DEMO_ORDERS_SECRET),
                                host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                print("uvicorn did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/webhooks/stripe"
        body = stripe_event("ABC123")
        with webhooklite.Sender(url, DEMO_STRIPE_SECRET, scheme="stripe") as stripe:
            first = stripe.post(body)  # what Stripe sends
            again = stripe.post(body)  # Stripe's retry of the same event: answered, not run again
        print(f"app answered {first.status}, then {again.status} {again.response_body.decode()}", flush=True)
        ok = got.wait(10) and first.ok and again.ok and b"duplicate" in again.response_body
        server.should_exit = True
        thread.join(10)
    return 0 if ok else 1


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", action="store_true", help="run the whole story on loopback with demo secrets")
    args = parser.parse_args(argv)
    if args.demo:
        return demo()
    print("serve it with uvicorn: uvicorn examples.fastapi_app:app --port 8000 (or --demo)", file=sys.stderr)
    return 2


def __getattr__(name: str) -> Any:
    # `uvicorn examples.fastapi_app:app` reads the attribute: the app is built from the environment
    # then (and refuses to start without it), not when the module is merely imported.
    if name == "app":
        return _from_environment()
    raise AttributeError(name)


if __name__ == "__main__":
    sys.exit(main())
