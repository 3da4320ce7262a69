"""``listen``: receive webhooks and print each delivery; inject faults; forward to an app; save.

``listen`` is a :class:`~webhooklite.Receiver` (on its own server, like
``Receiver.start()``) that prints each delivery. For each POST it: waits
``--delay`` seconds; checks the signature when ``--secret`` is given (a bad one
is answered 401 and printed with the reason); then, with probability
``--fail-rate``, answers ``--status`` (503 by default; ``--status`` alone
fails every delivery) with ``Retry-After: --retry-after``; otherwise relays the
delivery to ``--forward-to`` (original body and headers, so the app's own
signature check still passes) and answers with the app's status and body, or
else answers like a Receiver with one ``"*"`` handler (200, 400 for a body
that is not JSON, 200 ``duplicate`` for a message id already handled). The
same message id seen again is shown as ``attempt 2``, ``attempt 3``...
"""
import argparse
import collections
import hashlib
import json
import random
import sys
import threading
import time
from typing import Any, List, Optional, Tuple

from .._signals import until_stopped
from ..errors import SignatureError
from ..events import decode_body, event_id, event_type
from ..headers import Headers
from ..receiver import Receiver, Response, _error
from ..sender import Retry, Sender
from ..signing import SCHEMES, Signer
from . import options, relay, saved
from .output import Failure, Style, UsageError, clean, show_body, status_text, write

__all__ = ["register"]


class _Listener(Receiver):
    """A Receiver that prints each delivery, and can fail, delay, forward and save them.

    The Receiver is built without a secret: the listener checks signatures
    itself (once) so that it can print why one fails, then hands good
    deliveries to ``Receiver.process`` (body parsing, dedupe, the answer).
    """

    def __init__(self, args: argparse.Namespace, signer: Optional[Signer], style: Style) -> None:
        super().__init__(None, scheme=args.scheme, path=args.path)
        self.on("*", lambda event: None)
        self.signer = signer
        self.style = style
        self.delay: float = args.delay
        self.fail_rate: float = args.fail_rate
        self.fail_status: int = args.status
        self.retry_after: Optional[int] = args.retry_after
        self.forward_to: Optional[str] = args.forward_to
        self.forward_timeout: float = args.forward_timeout
        self._forwarder: Optional[Sender] = None
        self.save_dir: Optional[str] = args.save
        self.lock = threading.Lock()  # one delivery printed at a time
        self.count = 0
        self._seq = 0
        self._seen: "collections.OrderedDict[str, Tuple[int, bytes]]" = collections.OrderedDict()
        self._local = threading.local()

    def check(self, method: str, path: str, content_length: Optional[int]) -> Optional[Response]:
        # The transport calls check() then process() on the same thread: remember
        # the request line for process(), which is not given it.
        self._local.request = (method, path)
        refused = super().check(method, path, content_length)
        if refused is not None:
            s = self.style
            with self.lock:
                write(
                    f"{s(time.strftime('%H:%M:%S'), s.DIM)}  {clean(method[:20])} {clean(path[:200])}  -> "
                    + s.status(refused.status, status_text(refused.status))
                    + (f" (listening on {self.path} only)" if refused.status == 404 and self.path else "")
                )
        return refused

    def _attempt(self, eid: Optional[str], body: bytes) -> Tuple[int, bool]:
        """Which attempt of this message id this is, and whether the body is the one seen last."""
        if eid is None:
            return 1, False
        digest = hashlib.sha256(body).digest()
        with self.lock:
            n, last = self._seen.pop(eid, (0, b""))
            self._seen[eid] = (n + 1, digest)
            if len(self._seen) > 10000:  # bounded: ids come from the network
                self._seen.popitem(last=False)
        return n + 1, last == digest

    def process(self, h: Headers, body: bytes) -> Response:
        method, path = getattr(self._local, "request", ("POST", "/"))
        if self.delay:
            time.sleep(self.delay)
        try:
            data = decode_body(body, h.get("content-type"))
        except Exception:
            data = None
        etype, eid = event_type(h, data, None), event_id(h, data)
        attempt, same_body = self._attempt(eid, body)
        s = self.style
        response: Optional[Response] = None
        notes: List[str] = []
        # 1. The signature.
        if self.signer is None:
            signature = "not checked"
            sig_line = s("not checked (no --secret)", s.DIM)
        else:
            try:
                self.signer.check(body, h)
                signature = "ok"
                sig_line = s(f"ok ({self.signer.scheme})", s.GREEN)
            except SignatureError as e:
                signature = str(e)
                sig_line = s("BAD SIGNATURE: ", s.RED + ";1") + clean(str(e))
                response = _error(401, e.public)
        # 2. An injected fault.
        if response is None and self.fail_rate and random.random() < self.fail_rate:
            extra = [("Retry-After", str(self.retry_after))] if self.retry_after is not None else []
            response = _error(self.fail_status, "injected failure (webhooklite listen --fail-rate/--status)", extra)
            notes.append(
                s("injected fault", s.YELLOW)
                + (f", Retry-After: {self.retry_after}" if self.retry_after is not None else "")
            )
        # 3. The app behind us, or the Receiver's own answer.
        if response is None and self.forward_to is not None:
            response, note = self._forward(h, body)
            notes.append(note)
        if response is None:
            response = super().process(h, body)
            if response.status == 200 and b'"duplicate"' in response.body:
                notes.append("duplicate: this id was already handled")
            elif response.status >= 400:
                notes.append(clean(_error_message(response.body)))
        saved_as = self._save(method, path, h, body, response.status, signature)
        # 4. Print it all, in one piece.
        head = (
            f"{s(time.strftime('%H:%M:%S'), s.DIM)}  {clean(method[:20])} {clean(path[:200])}  "
            + s(clean(etype) if etype else "(no event type)", s.BOLD)
            + "  "
            + (clean(eid) if eid else "(no id)")
            + (s(f"  attempt {attempt}", s.YELLOW) if attempt > 1 else "")
        )
        answer = s.status(response.status, status_text(response.status))
        lines = [head, f"  signature: {sig_line}", "  answer:    " + answer + "".join(f" ({n})" for n in notes)]
        if saved_as:
            lines.append(f"  saved:     {saved_as}")
        if same_body:
            lines.append(s("  (the same body as the attempt before)", s.DIM))
        else:
            lines.extend(show_body(h, body, s))
        with self.lock:
            self.count += 1
            write("\n".join(lines) + "\n")
        return response

    def _forward(self, h: Headers, body: bytes) -> Tuple[Response, str]:
        assert self.forward_to is not None
        start = time.monotonic()
        try:
            if self._forwarder is None:  # one Sender: its kept-alive connections to the app are reused
                self._forwarder = Sender(self.forward_to, timeout=self.forward_timeout, retry=Retry(attempts=1))
            status, rh, rbody = relay.post(self.forward_to, relay.relay_headers(h), body, self.forward_timeout,
                                           self._forwarder)
        except Failure as e:
            return (
                _error(502, f"forwarding to the app failed: {e}"),
                self.style(f"forwarding to {self.forward_to} failed: {clean(str(e))}", self.style.RED),
            )
        ms = (time.monotonic() - start) * 1000
        keep = [(n.title(), rh[n]) for n in ("content-type", "retry-after", "location") if n in rh]
        return Response(status, keep, rbody), f"from {self.forward_to} in {ms:.0f} ms"

    def _save(self, method: str, path: str, h: Headers, body: bytes, status: int, signature: str) -> Optional[str]:
        if self.save_dir is None:
            return None
        rec = saved.record(method, path, h, body, status, signature)
        with self.lock:
            self._seq += 1
            seq = self._seq
        try:
            return saved.save(self.save_dir, rec, event_id(h, None) or "noid", seq)
        except OSError as e:
            return self.style(f"could not save: {e.strerror or e}", self.style.RED)


def _error_message(body: bytes) -> str:
    try:
        value = json.loads(body)
        if isinstance(value, dict) and isinstance(value.get("error"), str):
            return str(value["error"])
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace")


def cmd_listen(args: argparse.Namespace) -> int:
    if args.retry_after is not None and not (args.fail_rate or args.status):
        raise UsageError("--retry-after goes with --fail-rate or --status (it is sent on injected failures)")
    if args.status is not None and args.fail_rate is None:
        args.fail_rate = 1.0  # --status alone: every delivery gets it
    args.fail_rate = args.fail_rate or 0.0
    args.status = args.status or 503
    if args.forward_to is not None:
        options.check_url(args.forward_to, "--forward-to")
    if args.path is not None and not args.path.startswith("/"):
        raise UsageError(f"--path starts with '/': {args.path!r}")
    signer = options.signer(args.secret, args.scheme)
    if args.save is not None:
        try:
            saved.make_folder(args.save)
        except OSError as e:
            raise UsageError(f"--save: cannot make the folder {args.save}: {e.strerror or e}") from None
    style = Style.for_stream(sys.stdout)
    listener = _Listener(args, signer, style)

    # The URL is the first line, before any delivery can be printed (they wait for the lock).
    with listener.lock:
        try:
            server = listener.start(args.host, args.port)
        except OSError as e:
            import errno

            why = e.strerror or str(e)
            if e.errno == errno.EADDRINUSE:
                why = "the address is already in use (another listener? --port 0 picks a free port)"
            raise Failure(f"cannot listen on {args.host}:{args.port}: {why}") from None
        write(server.url)
        n = len(args.secret)
        what = [f"checking {args.scheme} signatures ({n} secret{'s' if n > 1 else ''})" if signer
                else "signatures not checked (no --secret)"]
        if args.fail_rate:
            what.append(
                f"failing {args.fail_rate:.0%} with {args.status}"
                + (f" (Retry-After: {args.retry_after})" if args.retry_after is not None else "")
            )
        if args.delay:
            what.append(f"answering after {args.delay:g} s")
        if args.forward_to:
            what.append(f"forwarding to {args.forward_to}")
        if args.save:
            what.append(f"saving to {args.save}")
        write(style("listening: " + "; ".join(what) + ". Ctrl-C to stop.", style.DIM) + "\n")
    try:
        with until_stopped():  # Ctrl-C or SIGTERM: exit 0
            while True:
                time.sleep(0.25)
    finally:
        server.stop()
    write(style(f"stopped after {listener.count} deliveries", style.DIM))
    return 0


def register(sub: "argparse._SubParsersAction[Any]", fmt: Any) -> None:
    """Add ``listen`` to the command line."""
    p = sub.add_parser(
        "listen",
        help="receive webhooks and print each one as it arrives",
        description="Receive webhooks and print each delivery: time, event type, id, the signature check, the "
        "answer and the JSON. Bad signatures are answered 401 and shown with the reason.",
        formatter_class=fmt,
        epilog="""examples:
  %(prog)s --port 8000 --secret whsec_...
  %(prog)s --port 0                                   # a free port; the URL is the first line printed
  %(prog)s --secret whsec_... --fail-rate 0.5 --retry-after 1     # watch a sender retry
  %(prog)s --status 410                               # every delivery answered 410 Gone
  %(prog)s --secret whsec_... --forward-to http://127.0.0.1:5000/webhooks --save deliveries

Fault injection (--fail-rate, --status, --delay, --retry-after) happens after the signature check;
a faulted delivery is not forwarded. Ctrl-C or SIGTERM stops it (exit 0).""",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=options.port, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--path", default=None, help="answer on this path only (others are 404)")
    p.add_argument("--secret", action="append", default=[], metavar="S",
                   help=options.SECRET_HELP + "; none: no check")
    p.add_argument("--scheme", choices=SCHEMES, default="standard", help="signature scheme (default standard)")
    p.add_argument("--forward-to", metavar="URL", help="relay each delivery (body and end-to-end headers as "
                   "received) to your app, and answer with its status")
    p.add_argument("--forward-timeout", type=options.positive_seconds, default=30.0, metavar="SECONDS",
                   help="how long the app may take to answer (default 30; then 502)")
    p.add_argument("--fail-rate", type=options.fraction, default=None, metavar="F",
                   help="answer this fraction of deliveries (0 to 1) with --status instead")
    p.add_argument("--status", type=options.http_status, default=None, help="the status of injected failures "
                   "(default 503; alone, every delivery gets it)")
    p.add_argument("--delay", type=options.seconds, default=0.0, metavar="SECONDS", help="wait this long before "
                   "answering each delivery (to test a sender's timeout)")
    p.add_argument("--retry-after", type=options.whole_seconds, default=None, metavar="SECONDS",
                   help="send Retry-After with injected failures")
    p.add_argument("--save", metavar="DIR", help="write each delivery (headers and raw body) to a JSON file in DIR, "
                   "readable by you only (files 0600; DIR made 0700)")
    p.set_defaults(func=cmd_listen)
