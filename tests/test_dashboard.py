"""The dashboard in a real headless Chromium, driven as an operator drives it.

``python -m webhooklite dashboard DB --port 0`` runs as a subprocess on a real sqlite file that this
test writes with a real Outbox (delivering to loopback servers, one answering 500 with a
``<script>`` body) and a real Inbox (behind a Receiver, with a handler that fails). Playwright's
Python package drives the system's Chromium (``WEBHOOKLITE_TEST_CHROMIUM``, e.g. /usr/bin/chromium;
never ``playwright install``); without either, every test here skips and says why (under
WEBHOOKLITE_CI=1 that is a failure). One browser for the module, a fresh context (no cookie) per test.
"""
import http.client
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import webhooklite
from clitools import CMD, Proc
from conftest import LoopbackServer, need_module, need_service

#: What the failing endpoint answers, and what a stored inbox event carries: neither may ever run.
EVIL = b"<script>window.pwned=1</script><b>boom</b>"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


class Answering(LoopbackServer):
    """A loopback endpoint answering every request with one status and body."""

    def __init__(self, status, body):
        self.status, self.body = status, body
        super().__init__()

    def respond(self, conn, method, path, headers, body):
        return self.answer(conn, self.status, self.body, {"Content-Type": "text/html"})


def fail_on_refund(event):
    if event.type == "order.refunded":
        raise RuntimeError("the warehouse is down")


class Site:
    """The database, the endpoints, the Outbox and Inbox the test writes with, and the dashboard serving it all."""

    def __init__(self, folder):
        self.db = str(folder / "webhooks.db")
        self.bad = Answering(500, EVIL)
        self.good = Answering(200, b'{"ok":true}')
        self.outbox = webhooklite.Outbox(self.db, schedule=(0, 0.02), workers=2, poll=0.05, disable_after=None)
        self.bad_id = self.outbox.add_endpoint(self.bad.base + "/hook", secret=webhooklite.generate_secret(),
                                               events=["fail.*"])
        self.good_id = self.outbox.add_endpoint(self.good.base + "/hook", secret=webhooklite.generate_secret(),
                                                events=["ok.*"])
        self.secret = webhooklite.generate_secret()
        self.inbox = webhooklite.Inbox(self.db, schedule=(0, 0.02), autostart=False, poll=0.05)
        self.receiver = webhooklite.Receiver(self.secret, inbox=self.inbox)
        self.receiver.on("*")(fail_on_refund)
        self.server = self.receiver.start(port=0)
        self.dead_delivery()  # so the first page has something dead on it
        self.proc = Proc(CMD + ["dashboard", self.db, "--port", "0"])
        #: The URL the dashboard printed (with its token).
        self.url = self.proc.line().strip()
        parts = urllib.parse.urlsplit(self.url)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.host, self.port = parts.hostname, parts.port
        self.token = urllib.parse.parse_qs(parts.query)["token"][0]

    def dead_delivery(self):
        """A fresh delivery to the failing endpoint, after its last attempt failed."""
        mid = self.outbox.send("fail.order", {"n": time.time()})
        assert self.outbox.drain(timeout=10)
        (d,) = self.outbox.deliveries(message_id=mid)
        assert d.state == "dead"
        return d

    def event(self, event_type, data):
        """An event received by the Receiver (202) and handled by the inbox's workers; its stored record."""
        d = webhooklite.send(self.server.url, event_type, data, secret=self.secret, timeout=5)
        assert d.status == 202, d
        assert self.inbox.drain(timeout=10)
        return self.inbox.event(d.id)

    def get(self, path, headers=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            conn.request("GET", path, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def post(self, path, fields, headers=None):
        body = urllib.parse.urlencode(fields).encode()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            conn.request("POST", path, body=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def close(self):
        self.proc.stop()
        self.server.stop()
        self.outbox.close()
        self.inbox.close()
        self.bad.close()
        self.good.close()


@pytest.fixture(scope="module")
def chromium():
    path = need_service("WEBHOOKLITE_TEST_CHROMIUM", "needs Chromium (Debian's chromium package)")
    need_module("playwright", "drives Chromium through Playwright's Python package")
    from playwright.sync_api import sync_playwright

    p = sync_playwright().start()
    browser = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()
    p.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory, chromium):
    s = Site(tmp_path_factory.mktemp("dashboard"))
    yield s
    s.close()


@pytest.fixture
def page(chromium, site):
    """A page in a fresh browser context (no cookie yet), errors collected in ``page.errors``."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    p = context.new_page()
    p.errors = []
    p.on("pageerror", lambda e: p.errors.append(str(e)))
    p.on("console", lambda m: m.type == "error" and p.errors.append(m.text))
    yield p
    context.close()


def opened(page, site, path="/"):
    """The page after opening the printed URL (which sets the cookie), then ``path``."""
    first = page.goto(site.url)
    assert first.ok and "token=" not in page.url  # the token leaves the address bar at once
    if path != "/":
        page.goto(site.base + path)
    page.wait_for_selector("#status.live")
    return page


def expect():
    from playwright.sync_api import expect as expect_

    return expect_


def row(page, href, within="table"):
    """The row of a table (``within``: a selector) holding a link to ``href``."""
    return page.locator(within).locator("tr", has=page.locator(f'a[href="{href}"]'))


# -- what an operator sees ------------------------------------------------------------------------------


def test_the_page_lists_the_endpoints_and_a_dead_delivery(page, site):
    d = site.dead_delivery()
    opened(page, site)
    table = page.locator("table.endpoints")
    expect()(table).to_contain_text(site.bad.base + "/hook")
    expect()(table).to_contain_text(site.good.base + "/hook")
    bad = row(page, f"/endpoints/{site.bad_id}")
    expect()(bad).to_contain_text("failing")
    expect()(bad.locator("svg.spark rect.bad").first).to_be_visible()  # the sparkline shows the failures
    page.click("nav.main >> text=Dead deliveries")
    dead = row(page, f"/deliveries/{d.id}")
    expect()(dead).to_contain_text("500 Internal Server Error")
    expect()(dead).to_contain_text(d.message_id)
    expect()(dead.get_by_role("button", name="Retry")).to_be_visible()
    page.click(f'a[href="/deliveries/{d.id}"]')
    attempts = page.locator("table.attempts tbody tr")
    expect()(attempts).to_have_count(2)  # the schedule has two attempts
    expect()(attempts.first).to_contain_text("500 Internal Server Error")
    assert page.errors == []


def test_clicking_retry_makes_the_delivery_pending(page, site):
    d = site.dead_delivery()
    opened(page, site, "/dead")
    row(page, f"/deliveries/{d.id}").get_by_role("button", name="Retry").click()
    expect()(page.locator(".note.ok")).to_contain_text(f"Delivery #{d.id} is due now")
    assert site.outbox.delivery(d.id).state == "pending"  # what the Python API says
    assert site.outbox.drain(timeout=10)  # and the workers try it again (and it dies again)
    assert site.outbox.delivery(d.id).attempts == d.attempts + 2


def test_disable_enable_and_recover_since(page, site):
    opened(page, site)
    row(page, f"/endpoints/{site.good_id}").get_by_role("button", name="Disable").click()
    expect()(page.locator(".note.ok")).to_contain_text(f"Endpoint #{site.good_id} is disabled")
    (e,) = [e for e in site.outbox.endpoints() if e.id == site.good_id]
    assert not e.enabled and e.disabled_reason == "disabled from the dashboard"
    expect()(row(page, f"/endpoints/{site.good_id}")).to_contain_text("disabled")
    row(page, f"/endpoints/{site.good_id}").get_by_role("button", name="Enable").click()
    expect()(page.locator(".note.ok")).to_contain_text("is enabled")
    assert [e.enabled for e in site.outbox.endpoints() if e.id == site.good_id] == [True]

    d = site.dead_delivery()
    page.goto(site.base + "/dead")
    page.fill("input[name=since]", "10m")
    page.get_by_role("button", name="Recover\u2026").click()
    expect()(page.locator(".note.ok")).to_contain_text("dead delivery(ies) since")
    assert site.outbox.delivery(d.id).state == "pending"
    page.fill("input[name=since]", "soon")  # not a duration: said, nothing done
    page.locator("form[action='/recover']").evaluate("f => f.noValidate = true")
    page.get_by_role("button", name="Recover\u2026").click()
    expect()(page.locator(".note.error")).to_contain_text("not a duration")
    assert site.outbox.drain(timeout=10)


def test_the_page_updates_by_itself_when_a_delivery_arrives(page, site):
    opened(page, site, f"/endpoints/{site.good_id}")
    page.evaluate("window.stillHere = true")  # gone if the page were reloaded
    mid = site.outbox.send("ok.order", {"n": 1})
    assert site.outbox.drain(timeout=10)
    (d,) = site.outbox.deliveries(message_id=mid)
    fresh = row(page, f"/deliveries/{d.id}")
    expect()(fresh).to_contain_text("delivered", timeout=10_000)  # a refresh is every 3 s
    expect()(fresh).to_contain_text("200 OK")
    assert page.evaluate("window.stillHere") is True
    assert page.errors == []


# -- what nobody else gets -------------------------------------------------------------------------------


def test_without_the_token_nothing_is_shown_and_nothing_changes(page, site):
    d = site.dead_delivery()
    for path in ("/", "/dead", f"/deliveries/{d.id}", "/inbox", "/static/dashboard.js", "/nothing",
                 "/?token=wrong", "/?token=" + urllib.parse.quote("tökén"), "/?token="):
        status, headers, body = site.get(path)
        assert status == 401, path
        assert d.message_id.encode() not in body and b"127.0.0.1" not in body and b"<" not in body, path
        assert "Set-Cookie" not in headers
        assert "default-src 'self'" in headers["Content-Security-Policy"]
    status, _, _ = site.get("/", {"Cookie": f"webhooklite-dashboard-{site.port}=wrong"})
    assert status == 401
    status, _, _ = site.get("/", {"Authorization": "Bearer wrong"})
    assert status == 401
    assert site.post(f"/deliveries/{d.id}/retry", {"back": "/"})[0] == 401
    assert site.outbox.delivery(d.id).state == "dead"

    response = page.goto(site.base + "/dead")  # a browser without the cookie
    assert response.status == 401
    assert d.message_id not in page.content()

    # The printed URL: a cookie only this origin's requests carry, and a redirect that drops the token.
    status, headers, _ = site.get("/?token=" + site.token)
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and cookie.startswith(f"webhooklite-dashboard-{site.port}=")
    status, _, body = site.get("/dead", {"Cookie": cookie.split(";")[0]})
    assert status == 200 and d.message_id.encode() in body
    assert site.get("/dead", {"Authorization": "Bearer " + site.token})[0] == 200


def test_another_page_cannot_make_the_browser_act(page, site):
    """A page on another port of 127.0.0.1 (the same site: the cookie goes along) posts a form: refused."""
    d = site.dead_delivery()
    opened(page, site)
    evil = f"""<!doctype html><form method="post" action="{site.base}/deliveries/{d.id}/retry">
<input type="hidden" name="back" value="/"><input type="hidden" name="csrf" value="{site.token}"></form>
<script>document.forms[0].submit()</script>""".encode()

    class Evil(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(evil)))
            self.end_headers()
            self.wfile.write(evil)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with page.expect_navigation(url=f"{site.base}/deliveries/{d.id}/retry"):
            page.goto(f"http://127.0.0.1:{server.server_port}/")
        assert "403" in page.inner_text("body")
    finally:
        server.shutdown()
        server.server_close()
    assert site.outbox.delivery(d.id).state == "dead"
    cookie = {"Cookie": f"webhooklite-dashboard-{site.port}={site.token}"}
    assert site.post(f"/deliveries/{d.id}/retry", {"back": "/"}, cookie)[0] == 403  # the cookie alone is not enough
    assert site.outbox.delivery(d.id).state == "dead"


def test_a_stored_script_is_shown_as_text_and_never_runs(page, site):
    d = site.dead_delivery()
    event = site.event("order.refunded", {"note": "<script>window.pwned=2</script>", "img": "<img src=x onerror=alert(1)>"})
    assert event.state == "dead"
    opened(page, site, f"/deliveries/{d.id}")
    snippet = page.locator("table.attempts pre.snippet").first
    expect()(snippet).to_have_text(EVIL.decode())  # the endpoint's answer, as the characters it was
    page.goto(f"{site.base}/inbox/events/{event.id}")
    expect()(page.locator("pre.body")).to_contain_text('"note": "<script>window.pwned=2</script>"')
    expect()(page.locator("pre.body")).to_contain_text("<img src=x onerror=alert(1)>")
    assert page.locator("main script, main img, main b").count() == 0
    expect()(page.locator("#status")).to_contain_text("updated")  # after a refresh too
    expect()(page.locator("pre.body")).to_contain_text("<script>window.pwned=2</script>")
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.errors == []


def test_the_inbox_page_retries_and_replays(page, site):
    dead = site.event("order.refunded", {"order_id": "R1"})
    done = site.event("order.paid", {"order_id": "P1"})
    assert (dead.state, done.state) == ("dead", "done")
    opened(page, site, "/inbox")
    expect()(row(page, f"/inbox/events/{done.id}", "table.events")).to_contain_text("done")
    expect()(row(page, f"/inbox/events/{done.id}", "table.events").get_by_role("button")).to_have_count(0)
    row(page, f"/inbox/events/{dead.id}", "table.dead-events").get_by_role("button", name="Retry").click()
    expect()(page.locator(".note.ok")).to_contain_text(f"Event #{dead.id}: the handlers that have not succeeded")
    assert site.inbox.event(dead.id).state == "pending"
    assert site.inbox.drain(timeout=10) and site.inbox.event(dead.id).state == "dead"

    page.fill("input[name=since]", "1h")
    page.get_by_role("button", name="Replay\u2026").click()
    expect()(page.locator(".note.ok")).to_contain_text("will run every handler again")
    assert site.inbox.event(done.id).state == "pending"  # a done event runs again
    assert site.inbox.drain(timeout=10)
    assert site.inbox.event(done.id).state == "done"
    assert page.errors == []


# -- the docs' pictures -------------------------------------------------------------------------------------


def test_the_screenshot_script_photographs_every_page(chromium, tmp_path):
    import struct
    import subprocess
    import sys

    from clitools import ENV, ROOT

    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "screenshots.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT, env=ENV)
    assert out.returncode == 0, out.stderr
    made = sorted(p.name for p in tmp_path.glob("*.png"))
    page = (ROOT / "docs" / "operating.md").read_text(encoding="utf-8")
    shown = sorted(set(re.findall(r"\(images/(dashboard-[a-z]+\.png)\)", page)))
    assert made == shown == sorted(p.name for p in (ROOT / "docs" / "images").glob("dashboard-*.png"))
    assert len(made) == 6
    for name in made:
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert width == 1280 and height >= 400, (name, width, height)
