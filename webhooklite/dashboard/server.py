"""The dashboard's HTTP side: the token, the routes, the actions; served by ``http.server``.

Access, as Jupyter does it: the server makes a random token and prints ``http://127.0.0.1:8080/?token=...``.

- A GET with ``?token=`` (the printed URL) sets a cookie holding the token (``HttpOnly``, so no
  script reads it; ``SameSite=Strict``, so no other site's page sends it; named after the port,
  since cookies ignore ports) and redirects to the same URL without the token, which so leaves
  the address bar and the history after the first visit. Later requests carry the cookie.
- A script may send ``Authorization: Bearer TOKEN`` instead.
- Anything else is answered 401 with no data (the stylesheet and the script too). Tokens are
  compared with :func:`hmac.compare_digest`.
- A POST (every action: retry, recover, disable, enable, replay) also needs the form's CSRF
  token (a field, or an ``X-CSRF-Token`` header): an HMAC of the token, written into the pages.
  Another page, even one on 127.0.0.1 at another port (the same *site*, so it does get the
  cookie sent), cannot read our pages and so cannot make a form that passes. A bearer request
  needs no CSRF token: a browser never adds that header by itself.
- GETs change nothing. Every response has a strict Content-Security-Policy (``default-src
  'self'``, no inline script or style), ``nosniff``, no framing, no referrer, no caching.

It is ``http.server`` (a thread per connection), meant for one operator on a loopback or
otherwise trusted interface: plain HTTP, so over a network the token travels in the clear.
"""
import hmac
import logging
import re
import secrets
import socket
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit

from .. import _text
from ..headers import parse_content_length
from . import pages
from .views import Views

__all__ = ["Dashboard", "Reply", "CSP"]

log = logging.getLogger("webhooklite")

#: What a page may load: only this server's own stylesheet and script; no inline script, no framing.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
_HEADERS = [
    ("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"), ("Cache-Control", "no-store"), ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
]
_STATIC = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8",
           "favicon.svg": "image/svg+xml"}
#: The biggest POST body read (a form of a few fields).
MAX_FORM = 16 * 1024
_ID = r"(\d{1,18})"
_BACK = re.compile(r"/(?![/\\])[^\s\\]*\Z")


class Reply(NamedTuple):
    """One response: status, headers (besides the security headers every response has), body."""

    status: int
    headers: List[Tuple[str, str]]
    body: bytes


def _plain(status: int, text: str, headers: Optional[List[Tuple[str, str]]] = None) -> Reply:
    return Reply(status, [("Content-Type", "text/plain; charset=utf-8")] + (headers or []), (text + "\n").encode())


class _Refused(Exception):
    """A request answered with a page saying why (bad input, not found), not an error of the server."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class Dashboard:
    """A web page for an ``outbox``, an ``inbox``, or both, on ``host:port`` (0: a free port), behind a token.

    ``Dashboard(outbox, inbox).start()`` serves it in a thread (``stop()`` ends it); :meth:`serve_forever`
    in the calling one. :attr:`url` is the address to open, token included. It reads and acts through
    the public API of the Outbox and the Inbox: it sends nothing itself (a retried delivery goes out
    when the outbox's workers pick it up) and never closes them.
    """

    def __init__(self, outbox: Any = None, inbox: Any = None, *, host: str = "127.0.0.1", port: int = 8080,
                 token: Optional[str] = None, refresh: float = 3.0) -> None:
        if outbox is None and inbox is None:
            raise ValueError("give an outbox, an inbox, or both")
        if token is not None and (len(token) < 16 or not re.fullmatch(r"[A-Za-z0-9_-]+", token)):
            raise ValueError("a token is at least 16 characters of A-Z, a-z, 0-9, _ and -")
        #: The secret in the URL: whoever has it can see and act.
        self.token: str = token or secrets.token_urlsafe(32)
        self._csrf = hmac.new(self.token.encode(), b"webhooklite dashboard: forms", "sha256").hexdigest()
        self.views = Views(outbox, inbox)
        self.parts: Tuple[str, ...] = tuple(p for p, x in (("outbox", outbox), ("inbox", inbox)) if x is not None)
        self.where: str = str(getattr(outbox if outbox is not None else inbox, "path", ""))
        self.refresh = float(refresh)
        self._notes: "OrderedDict[str, Tuple[str, str]]" = OrderedDict()
        self._notes_lock = threading.Lock()
        from importlib import resources

        static = resources.files(__package__ or "webhooklite.dashboard") / "static"
        self._template = (static / "page.html").read_text(encoding="utf-8")
        self._static = {name: (static / name).read_bytes() for name in _STATIC}
        self._httpd = _server(host, port, self)
        self.host: str = host
        #: The port it listens on (the one picked when ``port`` was 0).
        self.port: int = self._httpd.server_address[1]
        self.cookie = f"webhooklite-dashboard-{self.port}"
        self._thread: Optional[threading.Thread] = None

    @property
    def base(self) -> str:
        """``http://127.0.0.1:8080`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The address to open: the base and ``/?token=...``."""
        return f"{self.base}/?token={self.token}"

    def start(self) -> "Dashboard":
        """Serve in a background thread; returns at once."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="webhooklite-dashboard", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`stop` (from another thread) or KeyboardInterrupt."""
        self._httpd.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> "Dashboard":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- one request ------------------------------------------------------------------------------

    def respond(self, method: str, target: str, headers: Any, body: bytes = b"") -> Reply:
        """The answer to one request (``headers``: a case-insensitive mapping). Never raises."""
        from ..backends import StorageError

        try:
            return self._respond(method, target, headers, body)
        except _Refused as e:
            return self._page(e.status, pages.message_page("Not here" if e.status == 404 else "Refused", str(e)),
                              target)
        except StorageError as e:
            return self._page(503, pages.message_page("The database does not answer", str(e)), target)
        except Exception:
            log.exception("dashboard: %s %s failed", method, _text.escape(urlsplit(target).path))
            return _plain(500, "500 Internal Server Error: the dashboard failed on this page (see its log)")

    def _respond(self, method: str, target: str, headers: Any, body: bytes) -> Reply:
        try:
            parts = urlsplit(target)
            query = dict(parse_qsl(parts.query, max_num_fields=20))
        except ValueError:
            return _plain(400, "400 Bad Request: a malformed query string")
        path = parts.path
        bearer = self._bearer(headers)
        if method == "GET" and "token" in query:
            if not self._equal(query["token"]):
                return self._unauthorized()
            del query["token"]
            where = path + ("?" + urlencode(query) if query else "")
            cookie = f"{self.cookie}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            return Reply(303, [("Location", where), ("Set-Cookie", cookie), ("Content-Length", "0")], b"")
        if not (bearer or self._cookie_ok(headers)):
            return self._unauthorized()
        if method == "GET":
            return self._get(path, query, target)
        if method == "POST":
            form = self._form(headers, body)
            if not bearer and not self._csrf_ok(form.get("csrf") or headers.get("x-csrf-token") or ""):
                return _plain(403, "403 Forbidden: this form's token is missing or wrong (reload the page and try again)")
            return self._post(path, form)
        return _plain(405, "405 Method Not Allowed", [("Allow", "GET, POST")])

    # -- who may ------------------------------------------------------------------------------------

    def _equal(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode("utf-8", "surrogateescape"), self.token.encode())

    def _csrf_ok(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode("utf-8", "surrogateescape"), self._csrf.encode())

    def _bearer(self, headers: Any) -> bool:
        scheme, _, value = (headers.get("authorization") or "").strip().partition(" ")
        return scheme.lower() == "bearer" and self._equal(value.strip())

    def _cookie_ok(self, headers: Any) -> bool:
        found = False
        values = headers.get_all("cookie") if hasattr(headers, "get_all") else [headers.get("cookie")]
        for header in values or []:
            for item in (header or "").split(";"):
                name, _, value = item.strip().partition("=")
                if name == self.cookie and self._equal(value.strip()):
                    found = True
        return found

    def _unauthorized(self) -> Reply:
        return _plain(401, "401 Unauthorized: open the URL the dashboard printed when it started (it holds the token)",
                      [("WWW-Authenticate", 'Bearer realm="webhooklite dashboard"')])

    # -- pages ---------------------------------------------------------------------------------------

    def _ctx(self, target: str, note: Optional[str] = None) -> pages.Context:
        found = None
        if note:
            with self._notes_lock:
                found = self._notes.get(note)
        return pages.Context(self._csrf, target, found, self.parts, self.where, self.refresh)

    def _page(self, status: int, page: pages.Page, target: str, note: Optional[str] = None) -> Reply:
        body = pages.document(self._template, self._ctx(target, note), page)
        return Reply(status, [("Content-Type", "text/html; charset=utf-8")], body)

    def _need(self, part: str) -> Any:
        found = self.views.outbox if part == "outbox" else self.views.inbox
        if found is None:
            raise _Refused(404, f"This database holds no {part}.")
        return found

    def _get(self, path: str, query: Dict[str, str], target: str) -> Reply:
        m = re.fullmatch(r"/static/([a-z.]+)", path)
        if m and m.group(1) in _STATIC:
            return Reply(200, [("Content-Type", _STATIC[m.group(1)])], self._static[m.group(1)])
        if path == "/" and self.views.outbox is None:
            return Reply(303, [("Location", "/inbox"), ("Content-Length", "0")], b"")
        for pattern, render in self._routes():
            m = re.fullmatch(pattern, path)
            if m:
                return self._page(200, render(self._ctx(target, query.get("note")), query, *m.groups()), target,
                                  query.get("note"))
        raise _Refused(404, "There is no such page.")

    def _routes(self) -> List[Tuple[str, Callable[..., pages.Page]]]:
        return [("/", self._endpoints), (f"/endpoints/{_ID}", self._endpoint), (f"/deliveries/{_ID}", self._delivery),
                ("/dead", self._dead), ("/inbox", self._inbox), (f"/inbox/events/{_ID}", self._event)]

    def _endpoints(self, ctx: pages.Context, query: Dict[str, str]) -> pages.Page:
        self._need("outbox")
        return pages.endpoints_page(ctx, self.views.health())

    def _endpoint(self, ctx: pages.Context, query: Dict[str, str], eid: str) -> pages.Page:
        outbox = self._need("outbox")
        e = self._found(lambda: self.views.endpoint(int(eid)))
        state = _choice(query.get("state"), ("pending", "delivered", "dead"))
        before = _number(query.get("before"), "before")
        deliveries = outbox.deliveries(state, endpoint=e.id, limit=pages.PAGE, before=before)
        stats = outbox.stats().get(e.id, {})
        return pages.endpoint_page(ctx, e, stats, self.views.slots(e.id, time.time()), deliveries, state, before)

    def _delivery(self, ctx: pages.Context, query: Dict[str, str], did: str) -> pages.Page:
        outbox = self._need("outbox")
        d = self._found(lambda: outbox.delivery(int(did)))
        return pages.delivery_page(ctx, d, outbox.attempts(d.id))

    def _dead(self, ctx: pages.Context, query: Dict[str, str]) -> pages.Page:
        outbox = self._need("outbox")
        endpoint = _number(query.get("endpoint"), "endpoint")
        if endpoint is not None:
            self._found(lambda: self.views.endpoint(endpoint))
        return pages.dead_page(ctx, outbox.dead(endpoint=endpoint, limit=100), self.views.endpoint_urls(), endpoint)

    def _inbox(self, ctx: pages.Context, query: Dict[str, str]) -> pages.Page:
        inbox = self._need("inbox")
        state = _choice(query.get("state"), ("pending", "done", "dead"))
        return pages.inbox_page(ctx, inbox.stats(), inbox.dead(limit=100), inbox.events(state, limit=pages.PAGE),
                                state)

    def _event(self, ctx: pages.Context, query: Dict[str, str], eid: str) -> pages.Page:
        inbox = self._need("inbox")
        return pages.event_page(ctx, self._found(lambda: inbox.event(int(eid))))

    @staticmethod
    def _found(read: Callable[[], Any]) -> Any:
        try:
            return read()
        except KeyError as e:
            raise _Refused(404, str(e.args[0]) if e.args else "Not found.") from None

    # -- actions -------------------------------------------------------------------------------------

    @staticmethod
    def _form(headers: Any, body: bytes) -> Dict[str, str]:
        try:
            return dict(parse_qsl(body.decode("utf-8"), max_num_fields=20))
        except (UnicodeDecodeError, ValueError):
            raise _Refused(400, "The form could not be read.") from None

    def _post(self, path: str, form: Dict[str, str]) -> Reply:
        back = form.get("back") or "/"
        if not _BACK.match(back):
            back = "/"
        for pattern, act in self._actions():
            m = re.fullmatch(pattern, path)
            if m:
                try:
                    kind, text = act(form, *m.groups())
                except KeyError as e:
                    kind, text = "error", str(e.args[0]) if e.args else "not found"
                except ValueError as e:  # a disabled endpoint, a bad duration
                    kind, text = "error", str(e)
                return Reply(303, [("Location", self._with_note(back, kind, text)), ("Content-Length", "0")], b"")
        raise _Refused(404, "There is no such action.")

    def _actions(self) -> List[Tuple[str, Callable[..., Tuple[str, str]]]]:
        return [(f"/deliveries/{_ID}/retry", self._retry), (f"/endpoints/{_ID}/(disable|enable)", self._toggle),
                ("/recover", self._recover), (f"/inbox/events/{_ID}/retry", self._retry_event),
                ("/inbox/replay", self._replay)]

    def _retry(self, form: Dict[str, str], did: str) -> Tuple[str, str]:
        outbox = self._need("outbox")
        d = outbox.delivery(int(did))
        if outbox.retry(d.id):
            return "ok", f"Delivery #{d.id} is due now, on a fresh schedule (same message id {d.message_id})."
        return "ok", f"Delivery #{d.id} is being sent right now: left as it is."

    def _toggle(self, form: Dict[str, str], eid: str, what: str) -> Tuple[str, str]:
        outbox = self._need("outbox")
        e = self.views.endpoint(int(eid))
        if what == "disable":
            outbox.disable_endpoint(e.id, "disabled from the dashboard")
            return "ok", f"Endpoint #{e.id} is disabled: its deliveries wait until it is enabled."
        outbox.enable_endpoint(e.id)
        return "ok", f"Endpoint #{e.id} is enabled: what waited for it goes out now."

    def _recover(self, form: Dict[str, str]) -> Tuple[str, str]:
        outbox = self._need("outbox")
        since = time.time() - _duration(form.get("since", ""))
        endpoint = _number(form.get("endpoint") or None, "endpoint")
        if endpoint is not None:
            self.views.endpoint(endpoint)
        n = outbox.recover(since, endpoint=endpoint)
        text = f"{n} dead delivery(ies) since {_utc(since)} are due now, each on a fresh schedule."
        if endpoint is None:
            stats = outbox.stats()
            left = sorted(eid for eid, s in stats.items() if not s.get("enabled", True) and s.get("dead"))
            if left:
                text += (" Disabled endpoints keep theirs (" + ", ".join(f"#{i}" for i in left) +
                         "): enable them, then recover again.")
        return "ok", text

    def _retry_event(self, form: Dict[str, str], eid: str) -> Tuple[str, str]:
        inbox = self._need("inbox")
        if inbox.retry(int(eid)):
            return "ok", f"Event #{eid}: the handlers that have not succeeded run again now."
        return "ok", f"Event #{eid} is pending already: left as it is."

    def _replay(self, form: Dict[str, str]) -> Tuple[str, str]:
        inbox = self._need("inbox")
        since = time.time() - _duration(form.get("since", ""))
        n = inbox.replay(since)
        return "ok", f"{n} event(s) received since {_utc(since)} will run every handler again."

    def _with_note(self, back: str, kind: str, text: str) -> str:
        key = secrets.token_urlsafe(9)
        with self._notes_lock:
            self._notes[key] = (kind, text)
            while len(self._notes) > 200:
                self._notes.popitem(last=False)
        parts = urlsplit(back)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "note"] + [("note", key)]
        return parts.path + "?" + urlencode(query)


def _choice(value: Optional[str], allowed: Tuple[str, ...]) -> Optional[str]:
    if value in (None, ""):
        return None
    if value not in allowed:
        raise _Refused(400, f"state is one of {', '.join(allowed)}.")
    return value


def _number(value: Optional[str], what: str) -> Optional[int]:
    if value in (None, ""):
        return None
    if not re.fullmatch(r"\d{1,18}", str(value)):
        raise _Refused(400, f"{what} is a number.")
    return int(str(value))


def _duration(text: str) -> float:
    """``2h``, ``30m``, ``7d``: the command line's durations (ValueError with the reason otherwise)."""
    import argparse

    from ..cli.admin import duration

    try:
        return duration(text)
    except argparse.ArgumentTypeError as e:
        raise ValueError(str(e)) from None


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


# -- the transport ----------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """http.server's request parsing; the answer comes from :meth:`Dashboard.respond`, written in one piece."""

    protocol_version = "HTTP/1.1"
    server_version = "webhooklite-dashboard"
    sys_version = ""
    timeout = 30.0  # every connection's socket: an idle or stalled client is dropped
    dashboard: Dashboard

    def _serve(self, method: str) -> None:
        body = b""
        if method == "POST":
            length = parse_content_length(self.headers.get("Content-Length") or "")
            if self.headers.get("Transfer-Encoding") or length is None:
                self._write(_plain(411, "411 Length Required: send a Content-Length"), close=True)
                return
            if length > MAX_FORM:
                self._write(_plain(413, "413 Content Too Large"), close=True)
                return
            body = self.rfile.read(length)
        self._write(self.dashboard.respond(method, self.path, self.headers, body))

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _write(self, reply: Reply, close: bool = False) -> None:
        head = [f"HTTP/1.1 {reply.status} {_phrase(reply.status)}", f"Server: {self.server_version}"]
        head += [f"{k}: {v}" for k, v in _HEADERS + reply.headers]
        if not any(k == "Content-Length" for k, _ in reply.headers):
            head.append(f"Content-Length: {len(reply.body)}")
        if close:
            head.append("Connection: close")
            self.close_connection = True
        self.log_request(reply.status)
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        # http.server's own refusals (a malformed request line, a bad header): short text, our headers, closed.
        text = f"{code} {_phrase(code)}" + (f": {_text.escape(message)}" if message else "")
        self._write(_plain(code, text), close=True)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        # Never the query string: the first request holds the token.
        path = urlsplit(getattr(self, "path", "") or "").path
        log.debug("dashboard: %s %s %s %s", self.address_string(), _text.escape(self.command or "-"),
                  _text.escape(path), code)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("dashboard: %s", _text.escape(format % args))


def _phrase(status: int) -> str:
    from ..cli.output import phrase

    return phrase(status)


def _server(host: str, port: int, dashboard: Dashboard) -> ThreadingHTTPServer:
    """A listening ThreadingHTTPServer whose handler answers with ``dashboard`` (OSError if it cannot bind)."""
    handler = type("Handler", (_Handler,), {"dashboard": dashboard})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("Server", (ThreadingHTTPServer,), {
        "address_family": family, "daemon_threads": True, "block_on_close": False,
        "allow_reuse_port": False,  # never two dashboards on one port (3.14's http.server sets it)
    })
    server: ThreadingHTTPServer = server_class((host, port), handler)
    return server
