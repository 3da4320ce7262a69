"""The command line: ``python -m webhooklite listen | send | replay | verify | secret``.

What ``stripe listen`` and ``svix listen`` do with an account and a hosted relay,
done locally with nothing to sign up for, plus fault injection for testing a
sender's retries and a verifier that explains why a signature fails::

    python -m webhooklite listen --port 8000 --secret whsec_...      # print every delivery
    python -m webhooklite send http://127.0.0.1:8000/ payment.completed '{"order_id": "ABC123"}' --secret whsec_...
    python -m webhooklite listen --fail-rate 0.3 --retry-after 10    # answer 30% with 503
    python -m webhooklite listen --forward-to http://127.0.0.1:5000/webhooks --save deliveries
    python -m webhooklite verify deliveries/*.json --secret whsec_...
    python -m webhooklite replay deliveries/FILE.json http://127.0.0.1:5000/webhooks --secret whsec_...
    python -m webhooklite secret

Installed, the ``webhooklite`` command is the same thing. Exit status: 0 when
it worked (a 2xx answer), 1 when a delivery failed or the port cannot be
listened on, 2 for a usage error (bad option, bad JSON, unreadable file, bad
secret). Errors are one line on stderr.

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

Saved deliveries
----------------
``listen --save DIR`` writes every delivery it gets to
``DIR/<UTC time>-<n>-<message id>.json``; ``replay`` and ``verify`` read them.
The file is JSON meant to be read (and written) by people::

    {
      "format": "webhooklite-delivery/1",
      "received_at": "2026-04-14T08:30:00.123Z",
      "method": "POST",
      "path": "/",
      "headers": {"content-type": "application/json", "webhook-id": "msg_...", ...},
      "body": "{\\"event\\":\\"payment.completed\\",\\"order_id\\":\\"ABC123\\"}",
      "answered": 200,
      "signature": "ok"
    }

``headers`` are the request's headers as received (names in lower case;
a repeated header's values joined with ``", "``). ``body`` is the raw body
exactly as received, as a JSON string, when it is UTF-8; otherwise the file
has ``body_base64`` (standard base64 of the raw bytes) instead. The body is
what was signed, so it is kept byte for byte, never re-formatted: change one
character and ``verify`` says the signature no longer matches. ``answered``
(the status ``listen`` answered) and ``signature`` (``"ok"``, ``"not
checked"`` or why it failed) are for reading only. ``received_at`` (UTC) is
the clock ``verify`` checks the signature's timestamp against. To write
one by hand, ``headers`` and ``body`` (or ``body_base64``) are enough.
"""
import argparse
import base64
import binascii
import collections
import datetime
import decimal
import hashlib
import json
import os
import random
import re
import sys
import threading
import time
from typing import Any, Dict, List, Mapping, NoReturn, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from . import __version__
from ._signals import until_stopped
from .errors import SignatureError
from .events import decode_body, encode_event, event_id, event_type
from .headers import Headers
from .receiver import Receiver, Response, _error
from .sender import RESPONSE_CAP, Delivery, Retry, Sender, _describe
from .signing import SCHEMES, Signer, generate_secret, new_message_id

__all__ = ["main", "FORMAT"]

#: The ``format`` of a saved delivery file.
FORMAT = "webhooklite-delivery/1"
#: How much of a response or request body is printed (characters).
_PRINT_CAP = 4000
#: How many lines of pretty-printed JSON are printed per delivery.
_PRINT_LINES = 200
#: Headers that belong to one connection, not to the message: never relayed.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
     "host", "content-length", "expect"}
)
#: Signature headers of every scheme: dropped when a delivery is re-signed.
_SIGNATURE_HEADERS = frozenset(
    {"webhook-id", "webhook-timestamp", "webhook-signature", "svix-id", "svix-timestamp", "svix-signature",
     "x-hub-signature-256", "x-hub-signature", "stripe-signature"}
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and newline
_CONTROL_ALL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class _UsageError(Exception):
    """A mistake in what the user typed: exit status 2."""


class _Failure(Exception):
    """It did not work (no connection, port in use, a non-2xx answer): exit status 1."""


# -- output ----------------------------------------------------------------------


def _colour_wanted(stream: Any) -> bool:
    """Colour on a terminal only, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):
        return False


class _Style:
    """ANSI colours, or plain text."""

    BOLD, DIM, RED, GREEN, YELLOW, CYAN, MAGENTA = "1", "2", "31", "32", "33", "36", "35"

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text

    def status(self, status: Optional[int], text: str) -> str:
        if status is None or status >= 400:
            return self(text, self.RED)
        return self(text, self.GREEN if status < 300 else self.YELLOW)


def _clean(text: str) -> str:
    """Untrusted text made safe for one line of a terminal: control characters escaped."""
    return _CONTROL_ALL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _write(text: str, stream: Any = None) -> None:
    stream = stream or sys.stdout
    try:
        stream.write(text + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass  # stdout closed (piped into head): keep serving


def _phrase(status: int) -> str:
    import http  # the package only (HTTPStatus), not http.client

    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _status_text(status: Optional[int], error: Optional[str] = None) -> str:
    if status is None:
        return f"no answer: {error}" if error else "no answer"
    if 300 <= status < 400 and error:
        return error  # "302 Found: redirect to ... not followed"
    return f"{status} {_phrase(status)}".strip()


def _body_preview(body: bytes) -> str:
    if not body:
        return ""
    text = body.decode("utf-8", "replace")
    more = ""
    if len(text) > _PRINT_CAP:
        more = f"\n... ({len(body) - len(text[:_PRINT_CAP].encode('utf-8'))} more bytes)"
        text = text[:_PRINT_CAP]
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text) + more


class _Number(str):
    """A JSON number's exact text (so 25.00 is printed as 25.00, not 25.0)."""


def _pretty(value: Any, style: _Style, indent: str = "") -> str:
    """JSON, indented, coloured by token type when the style is on."""
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = indent + "  "
        items = [
            f"{inner}{style(json.dumps(k, ensure_ascii=False), style.CYAN)}: {_pretty(v, style, inner)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        inner = indent + "  "
        return "[\n" + ",\n".join(inner + _pretty(v, style, inner) for v in value) + "\n" + indent + "]"
    if isinstance(value, _Number):
        return style(str(value), style.YELLOW)
    if isinstance(value, str):
        # json.dumps escapes control characters: nothing in a body can drive the terminal.
        return style(json.dumps(value, ensure_ascii=False), style.GREEN)
    return style(json.dumps(value), style.MAGENTA)  # true, false, null


def _show_body(h: Mapping[str, str], body: bytes, style: _Style) -> List[str]:
    """The lines that show a body: pretty JSON when it is JSON, else text, else its size."""
    if not body:
        return ["  (empty body)"]
    text: Optional[str]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return [f"  ({len(body)} bytes, not UTF-8)"]
    ctype = (h.get("content-type") or "").split(";", 1)[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        from urllib.parse import parse_qs

        text = (parse_qs(text).get("payload") or [text])[0]
    try:
        value = json.loads(text, parse_int=_Number, parse_float=_Number, parse_constant=_Number)
        pretty = _pretty(value, style)
    except (ValueError, RecursionError):
        return ["  " + line for line in _body_preview(body).splitlines()]
    lines = pretty.splitlines()
    if len(lines) > _PRINT_LINES:
        lines = lines[:_PRINT_LINES] + [f"... ({len(lines) - _PRINT_LINES} more lines)"]
    return ["  " + line for line in lines]


# -- small helpers ---------------------------------------------------------------


def _utc_now_iso() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _parse_iso(text: str) -> float:
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    when = datetime.datetime.fromisoformat(t)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def _signer(secrets: Optional[List[str]], scheme: str, now: Optional[float] = None) -> Optional[Signer]:
    if not secrets:
        return None
    try:
        return Signer(secrets if len(secrets) > 1 else secrets[0], scheme, now=None if now is None else lambda: now)
    except ValueError as e:
        raise _UsageError(f"--secret: {e}") from None


def _check_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    try:
        parts.port
    except ValueError:
        raise _UsageError(f"{what}: the port is not a number: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _UsageError(f"{what} must be an http:// or https:// URL with a host, not {url!r}")
    return url


def _guess_scheme(h: Mapping[str, str]) -> str:
    if "stripe-signature" in h:
        return "stripe"
    if "x-hub-signature-256" in h or "x-hub-signature" in h:
        return "github"
    return "standard"


def _post(url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> Tuple[int, Dict[str, str], bytes]:
    """One POST with exactly these headers (no signing, no retry): status, headers, body (capped)."""
    import http.client

    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("POST", target, body, dict(headers))
        resp = conn.getresponse()
        data = resp.read(RESPONSE_CAP)
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    except Exception as exc:  # every transport error becomes words
        words, _ = _describe(exc, timeout)
        raise _Failure(words) from None
    finally:
        conn.close()


# -- saved deliveries ------------------------------------------------------------


def _record(method: str, path: str, h: Mapping[str, str], body: bytes, status: int, signature: str) -> Dict[str, Any]:
    rec: Dict[str, Any] = {
        "format": FORMAT,
        "received_at": _utc_now_iso(),
        "method": method,
        "path": path,
        "headers": dict(h.items()),
    }
    try:
        rec["body"] = body.decode("utf-8")
    except UnicodeDecodeError:
        rec["body_base64"] = base64.b64encode(body).decode("ascii")
    rec["answered"] = status
    rec["signature"] = signature
    return rec


def _load(path: str) -> Tuple[Headers, bytes, Dict[str, Any]]:
    """A saved delivery: its headers, raw body, and the whole record."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise _UsageError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise _UsageError(f"{path} is not a saved delivery (not UTF-8 text)") from None
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as e:
        raise _UsageError(f"{path} is not a saved delivery: not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("headers"), dict):
        raise _UsageError(f"{path} is not a saved delivery: it needs a \"headers\" object and a \"body\"")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in rec["headers"].items()):
        raise _UsageError(f"{path}: \"headers\" must map names to strings")
    if isinstance(rec.get("body"), str):
        body = rec["body"].encode("utf-8")
    elif isinstance(rec.get("body_base64"), str):
        try:
            body = base64.b64decode(rec["body_base64"], validate=True)
        except (binascii.Error, ValueError):
            raise _UsageError(f"{path}: \"body_base64\" is not valid base64") from None
    else:
        raise _UsageError(f"{path} is not a saved delivery: it has no \"body\" (or \"body_base64\") string")
    return Headers(rec["headers"]), body, rec


# -- listen ----------------------------------------------------------------------


class _Listener(Receiver):
    """A Receiver that prints each delivery, and can fail, delay, forward and save them.

    The Receiver is built without a secret: the listener checks signatures
    itself (once) so that it can print why one fails, then hands good
    deliveries to ``Receiver.process`` (body parsing, dedupe, the answer).
    """

    def __init__(self, args: argparse.Namespace, signer: Optional[Signer], style: _Style) -> None:
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
        self.save_dir: Optional[str] = args.save
        self.lock = threading.Lock()  # one delivery printed at a time
        self.count = 0
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
                _write(
                    f"{s(time.strftime('%H:%M:%S'), s.DIM)}  {_clean(method[:20])} {_clean(path[:200])}  -> "
                    + s.status(refused.status, _status_text(refused.status))
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
                sig_line = s("BAD SIGNATURE: ", s.RED + ";1") + _clean(str(e))
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
                notes.append(_clean(_error_message(response.body)))
        saved = self._save(method, path, h, body, response.status, signature)
        # 4. Print it all, in one piece.
        head = (
            f"{s(time.strftime('%H:%M:%S'), s.DIM)}  {_clean(method[:20])} {_clean(path[:200])}  "
            + s(_clean(etype) if etype else "(no event type)", s.BOLD)
            + "  "
            + (_clean(eid) if eid else "(no id)")
            + (s(f"  attempt {attempt}", s.YELLOW) if attempt > 1 else "")
        )
        answer = s.status(response.status, _status_text(response.status))
        lines = [head, f"  signature: {sig_line}", "  answer:    " + answer + "".join(f" ({n})" for n in notes)]
        if saved:
            lines.append(f"  saved:     {saved}")
        if same_body:
            lines.append(s("  (the same body as the attempt before)", s.DIM))
        else:
            lines.extend(_show_body(h, body, s))
        with self.lock:
            self.count += 1
            _write("\n".join(lines) + "\n")
        return response

    def _forward(self, h: Headers, body: bytes) -> Tuple[Response, str]:
        assert self.forward_to is not None
        headers = {k: v for k, v in h.items() if k not in _HOP_BY_HOP}
        start = time.monotonic()
        try:
            status, rh, rbody = _post(self.forward_to, headers, body, self.forward_timeout)
        except _Failure as e:
            return (
                _error(502, f"forwarding to the app failed: {e}"),
                self.style(f"forwarding to {self.forward_to} failed: {e}", self.style.RED),
            )
        ms = (time.monotonic() - start) * 1000
        keep = [(n.title(), rh[n]) for n in ("content-type", "retry-after", "location") if n in rh]
        return Response(status, keep, rbody), f"from {self.forward_to} in {ms:.0f} ms"

    def _save(self, method: str, path: str, h: Headers, body: bytes, status: int, signature: str) -> Optional[str]:
        if self.save_dir is None:
            return None
        rec = _record(method, path, h, body, status, signature)
        eid = event_id(h, None) or "noid"
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", eid)[:64]
        stamp = rec["received_at"][:19].replace("-", "").replace(":", "")
        with self.lock:
            self._seq = getattr(self, "_seq", 0) + 1
            seq = self._seq
        text = json.dumps(rec, indent=2, ensure_ascii=False) + "\n"
        for n in range(100):
            name = os.path.join(self.save_dir, f"{stamp}-{seq:04d}{'' if not n else f'.{n}'}-{safe}.json")
            try:
                with open(name, "x", encoding="utf-8") as f:
                    f.write(text)
                return name
            except FileExistsError:
                continue
            except OSError as e:
                return self.style(f"could not save: {e.strerror or e}", self.style.RED)
        return self.style("could not save: too many files with this name", self.style.RED)


def _error_message(body: bytes) -> str:
    try:
        value = json.loads(body)
        if isinstance(value, dict) and isinstance(value.get("error"), str):
            return value["error"]
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace")


def cmd_listen(args: argparse.Namespace) -> int:
    if args.retry_after is not None and not (args.fail_rate or args.status):
        raise _UsageError("--retry-after goes with --fail-rate or --status (it is sent on injected failures)")
    if args.status is not None and args.fail_rate is None:
        args.fail_rate = 1.0  # --status alone: every delivery gets it
    args.fail_rate = args.fail_rate or 0.0
    args.status = args.status or 503
    if args.forward_to is not None:
        _check_url(args.forward_to, "--forward-to")
    if args.path is not None and not args.path.startswith("/"):
        raise _UsageError(f"--path starts with '/': {args.path!r}")
    signer = _signer(args.secret, args.scheme)
    if args.save is not None:
        try:
            os.makedirs(args.save, exist_ok=True)
        except OSError as e:
            raise _UsageError(f"--save: cannot make the folder {args.save}: {e.strerror or e}") from None
    style = _Style(_colour_wanted(sys.stdout))
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
            raise _Failure(f"cannot listen on {args.host}:{args.port}: {why}") from None
        _write(server.url)
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
        _write(style("listening: " + "; ".join(what) + ". Ctrl-C to stop.", style.DIM) + "\n")
    try:
        with until_stopped():  # Ctrl-C or SIGTERM: exit 0
            while True:
                time.sleep(0.25)
    finally:
        server.stop()
    _write(style(f"stopped after {listener.count} deliveries", style.DIM))
    return 0


# -- send ------------------------------------------------------------------------


def _read_data(spec: str, what: str = "DATA") -> Tuple[bytes, str]:
    """DATA's bytes and where they came from: JSON text, @file, or - for stdin."""
    if spec == "-":
        return sys.stdin.buffer.read(), "stdin"
    if spec.startswith("@"):
        path = spec[1:]
        try:
            with open(path, "rb") as f:
                return f.read(), path
        except OSError as e:
            raise _UsageError(f"cannot read {what} from {path}: {e.strerror or e}") from None
    return spec.encode("utf-8", "surrogateescape"), what


def _parse_json(raw: bytes, source: str) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _UsageError(f"{source} is not UTF-8 (byte {e.start})") from None

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON value")

    try:
        # Decimal keeps a number's exact digits (25.00 is sent as 25.00).
        return json.loads(text, parse_float=decimal.Decimal, parse_constant=no_constants)
    except json.JSONDecodeError as e:
        before = text[max(0, e.pos - 30):e.pos]
        after = text[e.pos:e.pos + 20]
        near = (before + " >>> " + after).replace("\n", "\\n")
        raise _UsageError(
            f"{source} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno} (char {e.pos}): {near}"
        ) from None
    except (ValueError, RecursionError) as e:
        raise _UsageError(f"{source} is not valid JSON: {e}") from None


def _parse_headers(items: Optional[List[str]]) -> Dict[str, str]:
    headers: Dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not _TOKEN.fullmatch(name):
            raise _UsageError(f"-H {item!r} is not 'Name: value'")
        if any(c in value for c in "\r\n\x00"):
            raise _UsageError(f"-H {name}: the value contains CR, LF or NUL")
        headers[name] = value
    return headers


def _print_result(status: Optional[int], error: Optional[str], attempts: Optional[int], elapsed: float,
                  msg_id: str, body: bytes, style: _Style) -> None:
    parts = [style.status(status, _status_text(status, error))]
    if attempts is not None:
        parts.append(f"attempts: {attempts}")
    parts += [f"elapsed: {elapsed:.3f} s", f"id: {msg_id}"]
    _write("  ".join(parts))
    preview = _body_preview(body)
    if preview:
        _write(preview)


def cmd_send(args: argparse.Namespace) -> int:
    style = _Style(_colour_wanted(sys.stdout))
    headers = _parse_headers(args.header)
    if args.data is None:
        if args.raw:
            raise _UsageError("--raw posts DATA as is: give DATA (JSON text, @file or -)")
        data: Any = None
    else:
        raw, source = _read_data(args.data)
        data = _parse_json(raw, source)
    if args.raw:
        body = raw  # exactly the bytes given (checked to be JSON above)
    else:
        if data is not None and not isinstance(data, dict):
            raise _UsageError(
                f"DATA is a JSON {type(data).__name__}, not an object: an event's fields are an object "
                "(use --raw to post other JSON as is)"
            )
        try:
            body = encode_event(args.event, data)
        except (ValueError, TypeError) as e:
            raise _UsageError(str(e)) from None
    signer = _signer(args.secret, args.scheme)
    try:
        sender = Sender(
            args.url,
            (args.secret if len(args.secret) > 1 else args.secret[0]) if signer else None,
            scheme=args.scheme,
            timeout=args.timeout,
            retry=Retry(attempts=args.retries + 1, backoff=args.backoff),
            headers=headers,
        )
    except ValueError as e:
        raise _UsageError(str(e)) from None
    def on_retry(d: Delivery, wait: float) -> None:
        _write(
            f"attempt {d.attempts}: " + style.status(d.status, _status_text(d.status, d.error))
            + f"; retrying in {wait:.2f} s"
        )

    with sender:
        d = sender.deliver(body, event=args.event, on_retry=on_retry)
    n, elapsed, msg_id = d.attempts, d.elapsed, d.id
    _print_result(d.status, d.error, n, elapsed, msg_id, d.response_body, style)
    if not d.ok:
        raise _Failure(f"delivery failed after {n} attempt{'s' if n > 1 else ''}: {_status_text(d.status, d.error)}")
    return 0


# -- replay and verify -----------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    style = _Style(_colour_wanted(sys.stdout))
    h, body, _ = _load(args.file)
    _check_url(args.url, "URL")
    scheme = args.scheme or _guess_scheme(h)
    signer = _signer(args.secret, scheme)
    if args.new_id and signer is None:
        raise _UsageError("--new-id needs --secret: the id is part of the signature")
    headers = {k: v for k, v in h.items() if k not in _HOP_BY_HOP}
    msg_id = h.get("webhook-id") or h.get("svix-id") or h.get("x-github-delivery") or ""
    if signer is not None:
        headers = {k: v for k, v in headers.items() if k not in _SIGNATURE_HEADERS}
        if args.new_id or not msg_id:
            msg_id = new_message_id()
        headers["webhook-id"] = msg_id  # every scheme's request carries it, as a Sender's does
        if "x-github-delivery" in headers:
            headers["x-github-delivery"] = msg_id
        headers.update({k.lower(): v for k, v in signer.sign(body, msg_id).items()})
    start = time.monotonic()
    status, _, rbody = _post(args.url, headers, body, args.timeout)
    _print_result(status, None, None, time.monotonic() - start, msg_id or "(none)", rbody, style)
    if not 200 <= status < 300:
        hint = ""
        if status == 401 and signer is None:
            hint = " (an old delivery's timestamp is stale: --secret re-signs it)"
        raise _Failure(f"replay answered {_status_text(status)}{hint}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.file:
        h, body, rec = _load(path)
        scheme = args.scheme or _guess_scheme(h)
        received = rec.get("received_at")
        if received is None:
            now, against = time.time(), "now"
        else:
            try:
                now, against = _parse_iso(str(received)), "it was received"
            except ValueError:
                raise _UsageError(f"{path}: received_at is not an ISO 8601 time: {received!r}") from None
        # The timestamp is checked against the time the delivery arrived, not today.
        signer = _signer(args.secret, scheme, now)
        assert signer is not None
        try:
            ts, _ = signer.check(body, h, tolerance=args.tolerance)
        except SignatureError as e:
            failed += 1
            _write(f"{path}: {scheme} signature does not verify: {_clean(str(e))}", sys.stderr)
            continue
        when = ""
        if ts is not None:
            signed = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            skew = now - ts
            when = f", signed {signed} ({abs(skew):.0f} s {'before' if skew >= 0 else 'after'} {against})"
        _write(f"{path}: ok, the {scheme} signature verifies{when}")
    return 1 if failed else 0


def cmd_secret(args: argparse.Namespace) -> int:
    _write(generate_secret())
    return 0


# -- the parser ------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(cast: Any, low: float, high: float, what: str) -> Any:
    """An argparse type: ``cast(text)`` within ``low..high`` (inclusive), or a one-line error."""

    def parse(text: str) -> Any:
        try:
            x = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not low <= x <= high:  # NaN fails this too
            raise argparse.ArgumentTypeError(f"{what} from {low:g} to {high:g}, not {text}")
        return x

    return parse


_port = _number(int, 0, 65535, "a port number")
_fraction = _number(float, 0.0, 1.0, "a fraction")
_seconds = _number(float, 0.0, 1e6, "a number of seconds")
_positive_seconds = _number(float, 1e-3, 1e6, "a number of seconds")
_count = _number(int, 0, 100, "a whole number")
_status = _number(int, 200, 599, "an HTTP status")
_retry_after = _number(int, 0, 1e6, "whole seconds")


_SECRET_HELP = "the signing secret (whsec_...); repeat it while keys rotate"


def _build_parser(prog: str) -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog=prog,
        description="Send, receive, inspect and replay signed webhooks on your own machine.",
        formatter_class=fmt,
        epilog="""examples:
  %(prog)s secret
  %(prog)s listen --port 8000 --secret whsec_...
  %(prog)s send http://127.0.0.1:8000/ payment.completed '{"order_id": "ABC123"}' --secret whsec_...

exit status: 0 ok, 1 a delivery failed (or the port is taken), 2 a usage error.""",
    )
    parser.add_argument("--version", action="version", version=f"webhooklite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

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
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--path", default=None, help="answer on this path only (others are 404)")
    p.add_argument("--secret", action="append", default=[], metavar="S", help=_SECRET_HELP + "; none: no check")
    p.add_argument("--scheme", choices=SCHEMES, default="standard", help="signature scheme (default standard)")
    p.add_argument("--forward-to", metavar="URL", help="relay each delivery (body and headers as received) to "
                   "your app, and answer with its status")
    p.add_argument("--forward-timeout", type=_positive_seconds, default=30.0, metavar="SECONDS",
                   help="how long the app may take to answer (default 30; then 502)")
    p.add_argument("--fail-rate", type=_fraction, default=None, metavar="F",
                   help="answer this fraction of deliveries (0 to 1) with --status instead")
    p.add_argument("--status", type=_status, default=None, help="the status of injected failures (default 503; "
                   "alone, every delivery gets it)")
    p.add_argument("--delay", type=_seconds, default=0.0, metavar="SECONDS", help="wait this long before answering "
                   "each delivery (to test a sender's timeout)")
    p.add_argument("--retry-after", type=_retry_after, default=None, metavar="SECONDS",
                   help="send Retry-After with injected failures")
    p.add_argument("--save", metavar="DIR", help="write each delivery (headers and raw body) to a JSON file in DIR")
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser(
        "send",
        help="sign and send one event, with retries",
        description="Sign and POST one event to URL in the webhooklite envelope "
        '({"event": EVENT, <DATA\'s fields>, "time": ...}), retrying connection errors, timeouts, 408, 425, '
        "429 and 5xx. Prints the status, attempts, elapsed time and the answer's body.",
        formatter_class=fmt,
        epilog="""examples:
  %(prog)s http://127.0.0.1:8000/ payment.completed '{"order_id": "ABC123", "amount": 25.00}' --secret whsec_...
  %(prog)s http://127.0.0.1:8000/ payment.completed @order.json --secret whsec_...
  echo '{"text": "New order!"}' | %(prog)s https://hooks.slack.com/services/... message - --raw
  %(prog)s http://127.0.0.1:8000/ issues '{"action": "opened"}' --scheme github --secret s3cret -H 'X-Trace: 1'

exit status: 0 on a 2xx answer, 1 when the delivery failed, 2 on a usage error.""",
    )
    p.add_argument("url", metavar="URL", help="where to POST")
    p.add_argument("event", metavar="EVENT", help="the event type, e.g. payment.completed")
    p.add_argument("data", metavar="DATA", nargs="?", help="JSON object text, @file.json, or - for stdin "
                   "(default {})")
    p.add_argument("--secret", action="append", default=[], metavar="S", help=_SECRET_HELP + "; none: unsigned")
    p.add_argument("--scheme", choices=SCHEMES, default="standard", help="signature scheme (default standard)")
    p.add_argument("-H", "--header", action="append", metavar="'NAME: VALUE'", help="an extra header (repeatable)")
    p.add_argument("--timeout", type=_positive_seconds, default=10.0, metavar="SECONDS",
                   help="per attempt (default 10)")
    p.add_argument("--retries", type=_count, default=2, metavar="N", help="retries after the first attempt "
                   "(default 2; 0: no retry)")
    p.add_argument("--backoff", type=_seconds, default=0.5, metavar="SECONDS",
                   help="first wait between attempts, doubling each time (default 0.5)")
    p.add_argument("--raw", action="store_true", help="post DATA as is, no envelope (EVENT then only names "
                   "X-GitHub-Event for --scheme github)")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser(
        "replay",
        help="send a saved delivery again",
        description="POST a delivery saved by `listen --save` to URL: the same body and headers, or re-signed "
        "with a fresh timestamp when --secret is given (an old delivery's timestamp is past the receiver's "
        "tolerance). One attempt, no retry.",
        formatter_class=fmt,
        epilog="""examples:
  %(prog)s deliveries/20260414T083000-0001-msg_2b.json http://127.0.0.1:5000/webhooks
  %(prog)s deliveries/20260414T083000-0001-msg_2b.json http://127.0.0.1:5000/webhooks --secret whsec_... --new-id""",
    )
    p.add_argument("file", metavar="FILE", help="a delivery saved by listen --save")
    p.add_argument("url", metavar="URL", help="where to POST it")
    p.add_argument("--secret", action="append", default=[], metavar="S", help="re-sign with this secret")
    p.add_argument("--scheme", choices=SCHEMES, default=None, help="re-sign with this scheme (default: the one "
                   "the saved headers use)")
    p.add_argument("--new-id", action="store_true", help="with --secret: a new message id, so a receiver that "
                   "already handled it does not answer 'duplicate'")
    p.add_argument("--timeout", type=_positive_seconds, default=10.0, metavar="SECONDS", help="default 10")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser(
        "verify",
        help="check a saved delivery's signature and say why it fails",
        description="Check the signature of deliveries saved by `listen --save`, and say precisely why one "
        "fails: a missing header, the wrong scheme, a secret that looks wrong, a re-serialized body, a clock "
        "that is off. The timestamp is checked against the time the delivery was received.",
        formatter_class=fmt,
        epilog="""examples:
  %(prog)s deliveries/20260414T083000-0001-msg_2b.json --secret whsec_...
  %(prog)s deliveries/*.json --secret whsec_... --scheme stripe

exit status: 0 when every file verifies, 1 when one does not, 2 on a usage error.""",
    )
    p.add_argument("file", metavar="FILE", nargs="+", help="deliveries saved by listen --save")
    p.add_argument("--secret", action="append", required=True, metavar="S", help=_SECRET_HELP)
    p.add_argument("--scheme", choices=SCHEMES, default=None, help="default: the one the saved headers use")
    p.add_argument("--tolerance", type=_seconds, default=300.0, metavar="SECONDS",
                   help="how far the timestamp may be off (default 300)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "secret",
        help="print a new whsec_ signing secret",
        description="Print a new random signing secret: whsec_ and the base64 of 32 random bytes.",
        formatter_class=fmt,
        epilog="""example:
  %(prog)s
  export WEBHOOK_SECRET=$(%(prog)s)""",
    )
    p.set_defaults(func=cmd_secret)
    return parser


def _prog() -> str:
    argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m webhooklite" if argv0 in ("__main__.py", "-m", "") else "webhooklite"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    import logging

    parser = _build_parser(_prog())
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    # The library's warnings (a refused webhook, a failed attempt) are what the CLI prints
    # itself, in its own words: let only errors through, as one line each.
    logger = logging.getLogger("webhooklite")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("webhooklite: %(message)s"))
    handler.setLevel(logging.ERROR)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.ERROR)
    try:
        return int(args.func(args))
    except _UsageError as e:
        _write(f"{parser.prog} {args.command}: error: {e}", sys.stderr)
        return 2
    except _Failure as e:
        _write(f"{parser.prog} {args.command}: error: {e}", sys.stderr)
        return 1
    except KeyboardInterrupt:
        _write(f"{parser.prog} {args.command}: interrupted", sys.stderr)
        return 130
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])
