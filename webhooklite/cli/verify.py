"""``verify``: check a saved delivery's signature, and say precisely why it fails."""
import argparse
import datetime
import sys
import time
from typing import Any

from ..errors import SignatureError
from ..signing import SCHEMES
from . import options, saved
from .output import FAILED, OK, UsageError, clean, write

__all__ = ["register"]


def cmd_verify(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.file:
        h, body, rec = saved.load(path)
        scheme = args.scheme or options.guess_scheme(h)
        received = rec.get("received_at")
        if received is None:
            now, against = time.time(), "now"
        else:
            try:
                now, against = saved.parse_iso(str(received)), "it was received"
            except ValueError:
                raise UsageError(f"{path}: received_at is not an ISO 8601 time: {received!r}") from None
        # The timestamp is checked against the time the delivery arrived, not today.
        signer = options.signer(args.secret, scheme, now)
        assert signer is not None
        try:
            ts, _ = signer.check(body, h, tolerance=args.tolerance)
        except SignatureError as e:
            failed += 1
            write(f"{clean(path)}: {scheme} signature does not verify: {clean(str(e))}", sys.stderr)
            continue
        when = ""
        if ts is not None:
            signed = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            skew = now - ts
            when = f", signed {signed} ({abs(skew):.0f} s {'before' if skew >= 0 else 'after'} {against})"
        write(f"{clean(path)}: ok, the {scheme} signature verifies{when}")
    return FAILED if failed else OK


def register(sub: "argparse._SubParsersAction[Any]", fmt: Any) -> None:
    """Add ``verify`` to the command line."""
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
    p.add_argument("--secret", action="append", required=True, metavar="S", help=options.SECRET_HELP)
    p.add_argument("--scheme", choices=SCHEMES, default=None, help="default: the one the saved headers use")
    p.add_argument("--tolerance", type=options.seconds, default=300.0, metavar="SECONDS",
                   help="how far the timestamp may be off (default 300)")
    p.set_defaults(func=cmd_verify)
