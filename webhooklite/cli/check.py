"""``check URL --secret S``: test a webhook receiver the way an attacker and a flaky network would.

It sends the receiver at URL a valid delivery, then the deliveries a careful receiver must refuse
(a bad signature, stale and future timestamps, a body changed by one byte, only an unknown
signature version, each signature header missing) and the ones it must accept (a redelivery of
the same id after a success, a valid signature among several), one attempt each, through the
Sender (``Sender.relay``: the package's one HTTP client). The probes and the judging are
:mod:`webhooklite.conformance`; this prints the report card. Exit status 0 only when every probe
was answered as a careful receiver answers, 1 otherwise, 2 on a usage error.
"""
import argparse
import sys
from typing import Any, Dict, Optional, Tuple

from ..conformance import ACCEPT, REFUSE, probes, run
from ..sender import Retry, Sender
from ..signing import SCHEMES
from . import options
from .output import FAILED, OK, Style, UsageError, clean, print_json, status_text, table, write

__all__ = ["register"]

#: What each probe wants, in the report: a refusal is a 4xx other than 404, 405 and 413 (those mean the
#: probe never reached the signature check: a wrong URL or method, or a body limit).
_EXPECTED = {ACCEPT: "2xx", REFUSE: "4xx"}


def cmd_check(args: argparse.Namespace) -> int:
    options.check_url(args.url, "URL")
    options.signer(args.secret, args.scheme)  # a bad secret is a usage error, before anything is sent
    secret = args.secret if len(args.secret) > 1 else args.secret[0]
    items = probes(secret, args.scheme)
    try:
        sender = Sender(args.url, timeout=args.timeout, retry=Retry(attempts=1))
    except ValueError as e:
        raise UsageError(str(e)) from None

    def post(headers: Dict[str, str], body: bytes) -> Tuple[Optional[int], bytes]:
        d = sender.relay(body, headers)
        if d.status is None:
            raise ConnectionError(d.error or "no answer")
        return d.status, d.response_body

    with sender:
        results = run(items, post)
    failed = [r for r in results if not r.ok]
    if args.json:
        print_json({"url": args.url, "scheme": args.scheme, "passed": not failed,
                    "results": [r.as_dict() for r in results]})
        return FAILED if failed else OK
    style = Style.for_stream(sys.stdout)
    write(f"checking {clean(args.url)} ({args.scheme} scheme): {len(results)} probes, one attempt each")
    rows = [("pass" if r.ok else "FAIL", r.probe.name,
             status_text(r.status) if r.status is not None else r.got, _EXPECTED[r.probe.expect], r.probe.why)
            for r in results]
    lines = table(("", "PROBE", "ANSWERED", "WANTED", "WHY"), rows, style)
    write(lines[0])
    for line, r in zip(lines[1:], results):
        write(style(line, style.GREEN if r.ok else style.RED))
    first = results[0]
    if first.status in (404, 405, 413) or first.status is None:
        write(f"the valid delivery was answered {clean(first.got)}: is {clean(args.url)} the receiver's URL "
              "(a 404, 405 or 413 never counts as a refusal)?")
    if failed:
        names = ", ".join(r.probe.name for r in failed)
        write(style(f"{len(failed)} of {len(results)} probes were not answered as a careful receiver does: "
                    f"{names}", style.RED))
        return FAILED
    write(style(f"all {len(results)} probes answered as a careful receiver does", style.GREEN))
    return OK


def register(sub: "argparse._SubParsersAction[Any]", fmt: Any) -> None:
    """Add ``check`` to the command line."""
    p = sub.add_parser(
        "check",
        help="test a webhook receiver: does it refuse forged, stale, replayed and altered deliveries?",
        description="Send the receiver at URL a valid delivery and the deliveries a careful receiver must refuse "
        "(a bad signature, a stale and a future timestamp, a body changed by one byte, an unknown signature "
        "version only, each signature header missing) or accept (the same message id again after a success, "
        "a valid signature among several), then print what it answered against what it should have. Point it "
        "at your own endpoint (a test deployment: the valid probes run your handlers) with its secret.",
        formatter_class=fmt,
        epilog="""examples:
  %(prog)s http://127.0.0.1:8000/webhooks --secret whsec_...
  %(prog)s https://staging.example.com/github --secret 'It is a secret' --scheme github --json

exit status: 0 when every probe was answered correctly, 1 otherwise, 2 on a usage error.""",
    )
    p.add_argument("url", metavar="URL", help="the receiver to test")
    p.add_argument("--secret", action="append", required=True, metavar="S", help=options.SECRET_HELP)
    p.add_argument("--scheme", choices=SCHEMES, default="standard", help="signature scheme (default standard)")
    p.add_argument("--timeout", type=options.positive_seconds, default=10.0, metavar="SECONDS",
                   help="per probe (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON for a script")
    p.set_defaults(func=cmd_check)
