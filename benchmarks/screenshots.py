"""Screenshots of every dashboard page, for docs/operating.md: real traffic, a real dashboard, headless Chromium.

    python benchmarks/screenshots.py                      # writes docs/images/dashboard-*.png
    python benchmarks/screenshots.py --out /tmp/shots     # somewhere else

Needs Playwright's Python package (``pip install playwright``; no ``playwright install``: it drives
the system's Chromium) and Chromium at ``$WEBHOOKLITE_TEST_CHROMIUM`` (default ``/usr/bin/chromium``,
Debian's ``chromium`` package). Everything runs on 127.0.0.1: three endpoints on loopback servers (one
answers 200, one 500 with an HTML body, one is disabled by hand), an outbox on a tiny schedule so the
failing deliveries die within seconds, and an inbox whose receiver has a handler that fails.
"""
import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import webhooklite  # noqa: E402
from webhooklite.dashboard import Dashboard  # noqa: E402

#: Chromium's switches for a headless run that fetches nothing from outside.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PAGES = [  # (file name, path)
    ("dashboard-endpoints.png", "/"),
    ("dashboard-endpoint.png", "/endpoints/2"),
    ("dashboard-delivery.png", "/deliveries/{failed}"),
    ("dashboard-dead.png", "/dead"),
    ("dashboard-inbox.png", "/inbox"),
    ("dashboard-event.png", "/inbox/events/{dead_event}"),
]


def endpoint_server(status: int, body: bytes) -> ThreadingHTTPServer:
    """A loopback endpoint that answers every POST with ``status`` and ``body``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if body.startswith(b"<") else "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def record_order(event: Any) -> None:
    """A handler that works."""


def notify_warehouse(event: Any) -> None:
    """A handler that fails every time: its events die."""
    raise ConnectionError("warehouse API: 503 Service Unavailable")


def make_data(db: str) -> Tuple[Any, Any, dict]:
    """An outbox and an inbox in ``db`` with real deliveries and events; returns them and ids to show."""
    ok = endpoint_server(200, b'{"received":true}')
    failing = endpoint_server(500, b"<html><body><h1>500 Internal Server Error</h1>"
                                   b"<script>window.pwned=1</script></body></html>")
    paused = endpoint_server(200, b"{}")
    outbox = webhooklite.Outbox(db, schedule=(0, 0.05, 0.1), workers=2)
    secret = webhooklite.generate_secret()
    outbox.add_endpoint(f"http://127.0.0.1:{ok.server_port}/webhooks/orders", secret=secret, events=["order.*"])
    outbox.add_endpoint(f"http://127.0.0.1:{failing.server_port}/hooks", secret=secret, events=["*"])
    third = outbox.add_endpoint(f"http://127.0.0.1:{paused.server_port}/billing", secret=secret,
                                events=["invoice.*"], tenant="acme")
    for n in range(6):
        outbox.send("order.paid", {"order_id": f"A{1000 + n}", "amount": 2500 + n * 100, "currency": "eur"})
    outbox.send("invoice.created", {"invoice": "INV-7", "total": 4200}, tenant="acme")
    assert outbox.drain(timeout=20), "the demo deliveries did not settle"
    outbox.disable_endpoint(third, "paused while the billing service moves")
    outbox.send("invoice.created", {"invoice": "INV-8", "total": 990}, tenant="acme")  # waits for the endpoint
    outbox.stop()

    inbox = webhooklite.Inbox(db, schedule=(0, 0.05))
    receiver = webhooklite.Receiver(secret, inbox=inbox)

    receiver.on("order.*")(record_order)
    receiver.on("order.refunded")(notify_warehouse)
    with receiver.start(port=0) as server:
        for n in range(3):
            webhooklite.send(server.url, "order.paid", {"order_id": f"B{200 + n}"}, secret=secret)
        webhooklite.send(server.url, "order.refunded", {"order_id": "B201", "note": "<script>alert(1)</script>"},
                         secret=secret)
        assert inbox.drain(timeout=20), "the demo events did not settle"
    ids = {"failed": outbox.dead(limit=1)[0].id, "dead_event": inbox.dead(limit=1)[0].id}
    return outbox, inbox, ids


def shoot(out: Path, chromium: str) -> List[Path]:
    """Make the data, serve the dashboard, and write one PNG per page into ``out``."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []
    out = out.resolve()
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # so the page names the file as a user typed it: webhooks.db
        try:
            outbox, inbox, ids = make_data("webhooks.db")
        finally:
            os.chdir(here)
        with Dashboard(outbox, inbox, port=0) as dash, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 720}, device_scale_factor=1)
                page.goto(dash.url)
                for name, path in PAGES:
                    page.goto(dash.base + path.format(**ids))
                    page.wait_for_selector("#status.live")
                    page.locator("#status").evaluate("e => e.textContent = 'live'")  # no clock in the picture
                    target = out / name
                    page.screenshot(path=str(target), full_page=True)
                    written.append(target)
            finally:
                browser.close()
        outbox.close()
        inbox.close()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="where the PNG files go")
    args = parser.parse_args()
    chromium = os.environ.get("WEBHOOKLITE_TEST_CHROMIUM") or "/usr/bin/chromium"
    logging.getLogger("webhooklite").setLevel(logging.CRITICAL)  # the failing handler and endpoint are on purpose
    started = time.monotonic()
    for path in shoot(args.out, chromium):
        print(f"{path} ({path.stat().st_size // 1024} KiB)")
    print(f"{len(PAGES)} screenshots in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
