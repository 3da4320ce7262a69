"""``secret``: print a new ``whsec_`` signing secret, or with ``--v1a`` a ``whsk_``/``whpk_`` key pair."""
import argparse
from typing import Any

from ..signing import generate_keypair, generate_secret
from .output import OK, write

__all__ = ["register"]


def cmd_secret(args: argparse.Namespace) -> int:
    if args.v1a:
        sk, pk = generate_keypair()
        write(sk)  # first line: the sender's secret key (keep it there)
        write(pk)  # second line: the public key, for every receiver
    else:
        write(generate_secret())
    return OK


def register(sub: "argparse._SubParsersAction[Any]", fmt: Any) -> None:
    """Add ``secret`` to the command line."""
    p = sub.add_parser(
        "secret",
        help="print a new whsec_ signing secret (or, with --v1a, an ed25519 key pair)",
        description="Print a new random signing secret: whsec_ and the base64 of 32 random bytes. With --v1a, "
        "print a Standard Webhooks v1a (ed25519) key pair instead, on two lines: the whsk_ secret key, which "
        "signs and stays with the sender, then the whpk_ public key, which receivers verify with (it cannot sign).",
        formatter_class=fmt,
        epilog="""examples:
  %(prog)s
  export WEBHOOK_SECRET=$(%(prog)s)
  %(prog)s --v1a          # whsk_... (the sender's), then whpk_... (the receivers')""",
    )
    p.add_argument("--v1a", action="store_true", help="an ed25519 key pair (whsk_ and whpk_) for v1a signatures")
    p.set_defaults(func=cmd_secret)
