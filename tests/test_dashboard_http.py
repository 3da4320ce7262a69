"""The dashboard over plain HTTP (http.client, no browser): the command line, the token, bad input, PostgreSQL.

The browser tests are in test_dashboard.py; these need no Chromium, so they run everywhere.
"""
import http.client
import re
import signal
import socket
import sqlite3
import subprocess
import urllib.parse

import pytest

import webhooklite
from clitools import CMD, ENV, ROOT, Proc
from conftest import LoopbackServer
from webhooklite.dashboard import Dashboard


class Failing(LoopbackServer):
    def respond(self, conn, method, path, headers, body):
        return self.answer(conn, 500, b"<script>window.pwned=1</script>")


@pytest.fixture
def failing():
    s = Failing()
    yield s
    s.close()


def dead_outbox(target, failing):
    """An outbox at ``target`` with one endpoint and one dead delivery to it."""
    outbox = webhooklite.Outbox(target, schedule=(0,), disable_after=None)
    outbox.add_endpoint(failing.base + "/hook", secret=webhooklite.generate_secret())
    outbox.send("order.paid", {"order_id": "A1"})
    assert outbox.drain(timeout=10)
    (d,) = outbox.dead()
    return outbox, d


class Client:
    """Requests to a dashboard; ``auth`` adds the bearer token."""

    def __init__(self, host, port, token):
        self.host, self.port, self.token = host, port, token

    def request(self, method, path, body=None, headers=None, auth=True):
        h = dict(headers or {})
        if auth:
            h["Authorization"] = "Bearer " + self.token
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def raw(self, data):
        """Send bytes as they are; the first line of the answer."""
        with socket.create_connection((self.host, self.port), timeout=5) as s:
            s.sendall(data)
            return s.recv(65536).split(b"\r\n", 1)[0].decode()


@pytest.fixture
def dash(tmp_path, failing):
    outbox, d = dead_outbox(str(tmp_path / "webhooks.db"), failing)
    with Dashboard(outbox, None, port=0) as dashboard:
        yield dashboard, Client(dashboard.host, dashboard.port, dashboard.token), outbox, d
    outbox.close()


def test_the_printed_url_sets_a_strict_cookie_and_drops_the_token(dash):
    dashboard, client, outbox, d = dash
    status, headers, _ = client.request("GET", f"/dead?endpoint=1&token={dashboard.token}", auth=False)
    assert status == 303 and headers["Location"] == "/dead?endpoint=1"
    name, _, rest = headers["Set-Cookie"].partition("=")
    assert name == f"webhooklite-dashboard-{dashboard.port}"
    assert rest.split(";")[0] == dashboard.token
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {p.strip() for p in rest.split(";")[1:]}
    status, headers, body = client.request("GET", "/dead?endpoint=1", headers={"Cookie": f"a=b; {name}={dashboard.token}"},
                                           auth=False)
    assert status == 200 and d.message_id in body
    for key, value in (("Content-Security-Policy", "default-src 'self'"), ("X-Content-Type-Options", "nosniff"),
                       ("X-Frame-Options", "DENY"), ("Cache-Control", "no-store"), ("Referrer-Policy", "no-referrer")):
        assert value in headers[key]
    assert "<script>" not in body.split("</head>", 1)[1]  # no inline script; the stored answer is escaped
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in client.request("GET", f"/deliveries/{d.id}")[2]
    status, headers, js = client.request("GET", "/static/dashboard.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript") and "innerHTML" not in js


def test_posts_need_the_form_token_unless_the_bearer_header_is_used(dash):
    dashboard, client, outbox, d = dash
    cookie = {"Cookie": f"webhooklite-dashboard-{dashboard.port}={dashboard.token}",
              "Content-Type": "application/x-www-form-urlencoded"}
    form = urllib.parse.urlencode({"back": f"/deliveries/{d.id}"})
    assert client.request("POST", f"/deliveries/{d.id}/retry", form, cookie, auth=False)[0] == 403
    assert client.request("POST", f"/deliveries/{d.id}/retry", form + "&csrf=" + dashboard.token, cookie, auth=False)[0] == 403
    assert outbox.delivery(d.id).state == "dead"
    page = client.request("GET", "/dead")[2]
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    status, headers, _ = client.request("POST", f"/deliveries/{d.id}/retry", form, dict(cookie, **{"X-CSRF-Token": csrf}),
                                        auth=False)
    assert status == 303 and headers["Location"].startswith(f"/deliveries/{d.id}?note=")
    assert outbox.delivery(d.id).state == "pending"
    note = client.request("GET", headers["Location"])[2]
    assert f"Delivery #{d.id} is due now" in note
    assert outbox.drain(timeout=10) and outbox.delivery(d.id).state == "dead"
    status, headers, _ = client.request("POST", f"/deliveries/{d.id}/retry", "back=//evil.example/",  # bearer: no CSRF
                                        {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303 and headers["Location"].startswith("/?note=")  # never sent elsewhere
    assert outbox.delivery(d.id).state == "pending"


def test_bad_input_gets_a_clear_answer_and_the_server_keeps_serving(dash):
    dashboard, client, outbox, d = dash
    status, _, body = client.request("GET", "/deliveries/999999")
    assert status == 404 and "no delivery 999999" in body
    for path, status in (("/deliveries/abc", 404), ("/deliveries/" + "9" * 40, 404), ("/endpoints/1?state=bogus", 400),
                         ("/dead?endpoint=x", 400), ("/endpoints/1?before=-1", 400), ("/endpoints/77", 404),
                         ("/inbox", 404), ("/static/../server.py", 404), ("/?" + "&".join(f"a{i}=1" for i in range(50)), 400)):
        got, _, body = client.request("GET", path)
        assert got == status, (path, got, body)
        assert "Traceback" not in body
    assert "holds no inbox" in client.request("GET", "/inbox")[2]
    assert client.request("PUT", "/")[0] == 501  # http.server: an unknown method
    assert client.raw(b"POST /recover HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + dashboard.token.encode() +
                      b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").startswith("HTTP/1.1 411")
    big = "since=1h&pad=" + "x" * 20000
    assert client.request("POST", "/recover", big, {"Content-Type": "application/x-www-form-urlencoded"})[0] == 413
    assert client.request("POST", "/recover", b"\xff\xfe", {})[0] == 400
    status, headers, _ = client.request("POST", "/recover", "since=soon&back=/dead", {})
    assert status == 303 and "not a duration" in client.request("GET", headers["Location"])[2]
    assert client.raw(b"\x16\x03\x01 garbage\r\n\r\n").startswith("HTTP/1.1 400")
    assert client.request("GET", "/")[0] == 200  # still serving


def test_an_inbox_alone(tmp_path):
    inbox = webhooklite.Inbox(str(tmp_path / "inbox.db"))
    try:
        with Dashboard(None, inbox, port=0) as dashboard:
            client = Client(dashboard.host, dashboard.port, dashboard.token)
            status, headers, _ = client.request("GET", "/")
            assert status == 303 and headers["Location"] == "/inbox"
            status, _, body = client.request("GET", "/inbox")
            assert status == 200 and "No dead events." in body and ">Endpoints<" not in body
            assert client.request("GET", "/dead")[0] == 404
    finally:
        inbox.close()


# -- the command line ----------------------------------------------------------------------------------


def run(*args):
    return subprocess.run(CMD + [str(a) for a in args], capture_output=True, text=True, timeout=30, cwd=ROOT,
                          env=dict(ENV, NO_COLOR="1"))


def test_the_command_refuses_what_is_not_an_outbox_or_an_inbox(tmp_path):
    missing = tmp_path / "typo.db"
    out = run("dashboard", missing)
    assert out.returncode == 2 and out.stderr.strip().endswith(f"no such file: {missing} (give an outbox's or an "
                                                               "inbox's sqlite file, or a postgresql:// URL)")
    assert not missing.exists()
    (tmp_path / "notes.txt").write_text("hello\n" * 100)
    out = run("dashboard", tmp_path / "notes.txt")
    assert out.returncode == 2 and "is not a sqlite database" in out.stderr
    foreign = tmp_path / "app.db"
    with sqlite3.connect(foreign) as c:
        c.execute("CREATE TABLE users (id INTEGER)")
    out = run("dashboard", foreign)
    assert out.returncode == 2 and "is not a webhooklite outbox or inbox" in out.stderr, out.stderr
    for out in (run("dashboard", foreign, "--port", "70000"), run("dashboard")):
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_the_command_prints_its_url_and_stops_on_sigterm(tmp_path, failing):
    outbox, d = dead_outbox(str(tmp_path / "webhooks.db"), failing)
    outbox.close()
    proc = Proc(CMD + ["dashboard", str(tmp_path / "webhooks.db"), "--port", "0"], env=dict(ENV, NO_COLOR="1"))
    try:
        url = proc.line().strip()
        m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_-]{43})", url)
        assert m, url
        assert "the dashboard of the outbox in " in proc.line()
        client = Client("127.0.0.1", int(m.group(1)), m.group(2))
        status, _, body = client.request("GET", "/dead")
        assert status == 200 and d.message_id in body
        assert client.request("GET", "/dead", auth=False)[0] == 401
        with socket.create_server(("127.0.0.1", 0)) as taken:  # a second one on a port in use
            out = run("dashboard", tmp_path / "webhooks.db", "--port", taken.getsockname()[1])
        assert out.returncode == 1 and "already in use" in out.stderr and "Traceback" not in out.stderr
    finally:
        code = proc.stop(signal.SIGTERM)
    assert code == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.output.rstrip().endswith("stopped")


def test_on_postgresql(postgres, failing):
    url = postgres()
    outbox, d = dead_outbox(url, failing)
    inbox = webhooklite.Inbox(url)
    outbox.close()
    inbox.close()
    proc = Proc(CMD + ["dashboard", url, "--port", "0"], env=dict(ENV, NO_COLOR="1"))
    try:
        parts = urllib.parse.urlsplit(proc.line().strip())
        client = Client(parts.hostname, parts.port, urllib.parse.parse_qs(parts.query)["token"][0])
        status, _, body = client.request("GET", "/")
        assert status == 200 and failing.base + "/hook" in body
        assert d.message_id in client.request("GET", "/dead")[2]
        assert client.request("GET", "/inbox")[0] == 200  # both parts are in the database
        status, headers, _ = client.request("POST", f"/deliveries/{d.id}/retry", "back=/dead",
                                            {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 303
    finally:
        assert proc.stop(signal.SIGTERM) == 0, proc.stderr
    with webhooklite.Outbox(url) as check:
        assert check.delivery(d.id).state == "pending"
