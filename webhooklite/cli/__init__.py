"""The command line: ``python -m webhooklite listen | send | replay | verify | secret | worker | outbox |
inbox | check``.

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
    python -m webhooklite outbox webhooks.db stats                    # an operator's view (also: inbox DB ...)
    python -m webhooklite check http://127.0.0.1:8000/ --secret whsec_...   # does a receiver refuse forgeries?

Installed, the ``webhooklite`` command is the same thing. Exit status: 0 when
it worked (a 2xx answer), 1 when a delivery failed or the port cannot be
listened on, 2 for a usage error (bad option, bad JSON, unreadable file, bad
secret). Errors are one line on stderr.

One module per command group, each with a ``register(subparsers, formatter)``
that adds its commands; :data:`COMMANDS` lists them in the order ``--help``
shows them. A new group is a new module and its name in that list. What they
share: :mod:`.output` (colours, escaping, errors, exit statuses, tables and
JSON), :mod:`.options` (argument types, ``--secret``), :mod:`.saved` (the
saved-delivery file, whose format is described there), :mod:`.relay`, and :mod:`.admin` (opening an
outbox or inbox for the admin commands, durations such as ``2h``).
"""
import argparse
import importlib
import os
import sys
from typing import NoReturn, Optional, Sequence

from .. import __version__
from .output import FAILED, USAGE, Failure, UsageError, clean, write
from .saved import FORMAT

__all__ = ["main", "FORMAT", "COMMANDS"]

#: The modules of this package that add commands, in the order of ``--help``.
COMMANDS = ("listen", "send", "verify", "secret", "worker", "outbox", "inbox", "check", "dashboard")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The whole command line: every command module's subparsers under one parser."""
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f".{name}", __name__).register(sub, fmt)
    return parser


def _prog() -> str:
    argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m webhooklite" if argv0 in ("__main__.py", "-m", "") else "webhooklite"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    import logging

    parser = build_parser(_prog())
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed
        return e.code if isinstance(e.code, int) else (0 if e.code is None else USAGE)
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
    except (UsageError, Failure) as e:  # one line, whatever the words carry (a server's text too)
        write(f"{parser.prog} {args.command}: error: {clean(str(e))}", sys.stderr)
        return USAGE if isinstance(e, UsageError) else FAILED
    except KeyboardInterrupt:
        write(f"{parser.prog} {args.command}: interrupted", sys.stderr)
        return 130
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])
