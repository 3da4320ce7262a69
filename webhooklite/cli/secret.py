"""``secret``: print a new ``whsec_`` signing secret."""
import argparse
from typing import Any

from ..signing import generate_secret
from .output import OK, write

__all__ = ["register"]


def cmd_secret(args: argparse.Namespace) -> int:
    write(generate_secret())
    return OK


def register(sub: "argparse._SubParsersAction[Any]", fmt: Any) -> None:
    """Add ``secret`` to the command line."""
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
