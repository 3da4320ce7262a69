"""``send`` (sign and POST one event, with retries) and ``replay`` (POST a saved delivery again)."""
import argparse
import decimal
import json
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from .._wire import check_value
from ..events import encode_event
from ..sender import RETRY_STATUSES, Delivery, Retry, Sender
from ..signing import SCHEMES, new_message_id
from . import options, relay, saved
from .output import Failure, Style, UsageError, body_preview, clean, status_text, write

__all__ = ["register"]

#: Signature headers of every scheme: dropped when a delivery is re-signed.
_SIGNATURE_HEADERS = frozenset(
    {"webhook-id", "webhook-timestamp", "webhook-signature", "svix-id", "svix-timestamp", "svix-signature",
     "x-hub-signature-256", "x-hub-signature", "stripe-signature"}
)


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
            raise UsageError(f"cannot read {what} from {path}: {e.strerror or e}") from None
    return spec.encode("utf-8", "surrogateescape"), what


def _parse_json(raw: bytes, source: str) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{source} is not UTF-8 (byte {e.start})") from None

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON value")

    try:
        # Decimal keeps a number's exact digits (25.00 is sent as 25.00).
        return json.loads(text, parse_float=decimal.Decimal, parse_constant=no_constants)
    except json.JSONDecodeError as e:
        before = text[max(0, e.pos - 30):e.pos]
        after = text[e.pos:e.pos + 20]
        near = (before + " >>> " + after).replace("\n", "\\n")
        raise UsageError(
            f"{source} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno} (char {e.pos}): {near}"
        ) from None
    except (ValueError, RecursionError) as e:
        raise UsageError(f"{source} is not valid JSON: {e}") from None


def _parse_headers(items: Optional[List[str]]) -> Dict[str, str]:
    """-H 'Name: value' options; the Sender checks the name and the value."""
    headers: Dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise UsageError(f"-H {item!r} is not 'Name: value'")
        headers[name] = value
    return headers


def _print_result(status: Optional[int], error: Optional[str], attempts: Optional[int], elapsed: float,
                  msg_id: str, body: bytes, style: Style) -> None:
    parts = [style.status(status, clean(status_text(status, error)))]  # the error quotes the server
    if attempts is not None:
        parts.append(f"attempts: {attempts}")
    parts += [f"elapsed: {elapsed:.3f} s", f"id: {msg_id}"]
    write("  ".join(parts))
    preview = body_preview(body)
    if preview:
        write(preview)


def cmd_send(args: argparse.Namespace) -> int:
    style = Style.for_stream(sys.stdout)
    headers = _parse_headers(args.header)
    if args.data is None:
        if args.raw:
            raise UsageError("--raw posts DATA as is: give DATA (JSON text, @file or -)")
        data: Any = None
    else:
        raw, source = _read_data(args.data)
        data = _parse_json(raw, source)
    msg_id = new_message_id()
    # Stripe signs no id header: its receivers dedupe on the body's "id". DATA's own is the id;
    # without one the envelope carries the message id there, as Sender.send() does.
    own_id = args.scheme == "stripe" and isinstance(data, dict) and "id" in data
    if own_id:
        msg_id = str(data["id"])
        try:
            check_value("DATA's \"id\"", msg_id)
        except ValueError as e:
            raise UsageError(str(e)) from None
    if args.raw:
        body = raw  # exactly the bytes given (checked to be JSON above)
    else:
        if data is not None and not isinstance(data, dict):
            raise UsageError(
                f"DATA is a JSON {type(data).__name__}, not an object: an event's fields are an object "
                "(use --raw to post other JSON as is)"
            )
        try:
            body = encode_event(args.event, data, id=msg_id if args.scheme == "stripe" and not own_id else None)
        except (ValueError, TypeError) as e:
            raise UsageError(str(e)) from None
    signer = options.signer(args.secret, args.scheme)
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
        raise UsageError(str(e)) from None

    def on_retry(d: Delivery, wait: float) -> None:
        write(
            f"attempt {d.attempts}: " + style.status(d.status, clean(status_text(d.status, d.error)))
            + f"; retrying in {wait:.2f} s"
        )

    with sender:
        d = sender.deliver(body, msg_id=msg_id, event=args.event, on_retry=on_retry)
    n, elapsed, msg_id = d.attempts, d.elapsed, d.id
    _print_result(d.status, d.error, n, elapsed, msg_id, d.response_body, style)
    if not d.ok:
        raise Failure(f"delivery failed after {n} attempt{'s' if n > 1 else ''}: {status_text(d.status, d.error)}")
    return 0


# -- replay ----------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    style = Style.for_stream(sys.stdout)
    h, body, _ = saved.load(args.file)
    options.check_url(args.url, "URL")
    scheme = args.scheme or options.guess_scheme(h)
    signer = options.signer(args.secret, scheme)
    if args.new_id and signer is None:
        raise UsageError("--new-id needs --secret: the id is part of the signature")
    if args.new_id and scheme == "stripe":
        raise UsageError(
            "--new-id cannot make a Stripe delivery new: a Stripe receiver dedupes on the body's \"id\" "
            "(evt_...), which the signature covers and replay keeps. To send it as a new event, change "
            "\"id\" in the body of the saved file and replay it with --secret"
        )
    headers = relay.relay_headers(h)
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
    status, _, rbody = relay.post(args.url, headers, body, args.timeout)
    _print_result(status, None, None, time.monotonic() - start, msg_id or "(none)", rbody, style)
    if not 200 <= status < 300:
        hint = ""
        if status == 401 and signer is None:
            hint = " (an old delivery's timestamp is stale: --secret re-signs it)"
        raise Failure(f"replay answered {status_text(status)}{hint}")
    return 0


# -- the command line ------------------------------------------------------------


def _retried() -> str:
    """What the Sender retries, in words: "408, 409, ... and 504" (from its own list)."""
    codes = [str(s) for s in sorted(RETRY_STATUSES)]
    return ", ".join(codes[:-1]) + " and " + codes[-1] if len(codes) > 1 else "".join(codes)


def register(sub: "argparse._SubParsersAction[Any]", fmt: Any) -> None:
    """Add ``send`` and ``replay`` to the command line."""
    p = sub.add_parser(
        "send",
        help="sign and send one event, with retries",
        description="Sign and POST one event to URL in the webhooklite envelope "
        f'({{"event": EVENT, <DATA\'s fields>, "time": ...}}), retrying connection errors, timeouts and the '
        f"statuses {_retried()}; any other answer is final. Prints the status, "
        "attempts, elapsed time and the answer's body.",
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
    p.add_argument("--secret", action="append", default=[], metavar="S",
                   help=options.SECRET_HELP + "; none: unsigned")
    p.add_argument("--scheme", choices=SCHEMES, default="standard", help="signature scheme (default standard)")
    p.add_argument("-H", "--header", action="append", metavar="'NAME: VALUE'", help="an extra header (repeatable)")
    p.add_argument("--timeout", type=options.positive_seconds, default=10.0, metavar="SECONDS",
                   help="per attempt (default 10)")
    p.add_argument("--retries", type=options.count, default=2, metavar="N", help="retries after the first attempt "
                   "(default 2; 0: no retry)")
    p.add_argument("--backoff", type=options.seconds, default=0.5, metavar="SECONDS",
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
    p.add_argument("--new-id", action="store_true", help="with --secret: a new message id (webhook-id; "
                   "X-GitHub-Delivery too for github), so a receiver that already handled it does not answer "
                   "'duplicate'. Not with stripe, whose receivers dedupe on the body's signed \"id\": change "
                   "it in the saved file instead")
    p.add_argument("--timeout", type=options.positive_seconds, default=10.0, metavar="SECONDS", help="default 10")
    p.set_defaults(func=cmd_replay)
