"""``worker APP``: run an inbox's handlers (or an outbox's deliveries) in a process of its own.

    python -m webhooklite worker myapp:receiver      # a Receiver with an Inbox: run its handlers
    python -m webhooklite worker myapp:outbox        # an Outbox: deliver what it holds

``APP`` is ``module:attribute`` (the attribute may be dotted), as for gunicorn and uvicorn; the
current folder is on the import path. The worker stops cleanly on SIGTERM or Ctrl-C: handlers
(or attempts) in flight finish and are recorded, claims not started are handed back.
"""
import argparse
import importlib
import os
import sys
from typing import Any

from .output import OK, UsageError, write

__all__ = ["register", "load"]


def load(spec: str) -> Any:
    """The object ``module:attribute`` names (UsageError saying what is wrong otherwise)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"APP is module:attribute, e.g. myapp:receiver, not {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(f"cannot import {module_name!r}: {e}") from None
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"{module_name!r} has no attribute {attr!r}") from None
    return target


def cmd_worker(args: argparse.Namespace) -> int:
    from ..outbox import Outbox
    from ..receiver import Receiver

    target = load(args.app)
    if isinstance(target, Receiver):
        if target.inbox is None:
            raise UsageError(f"{args.app} is a Receiver without an inbox: Receiver(secret, inbox=Inbox(...))")
        runner: Any = target.inbox
        what = f"running the handlers of {runner.path} ({runner.workers} threads)"
    elif isinstance(target, Outbox):
        runner = target
        what = f"delivering from {runner.path} ({runner.workers} threads)"
    else:
        raise UsageError(f"{args.app} is a {type(target).__name__}: give a Receiver with an inbox, or an Outbox")
    write(f"webhooklite worker: {what}. Ctrl-C or SIGTERM stops it.", sys.stderr)
    runner.run()
    write("webhooklite worker: stopped", sys.stderr)
    return OK


def register(sub: "argparse._SubParsersAction[Any]", fmt: Any) -> None:
    """Add ``worker`` to the command line."""
    p = sub.add_parser(
        "worker",
        help="run an inbox's handlers (or an outbox's deliveries) in a process of its own",
        description="Run the handlers of a Receiver's inbox, or the deliveries of an Outbox, until SIGTERM or "
        "Ctrl-C. Handlers in flight finish and are recorded first. APP is module:attribute, imported with "
        "the current folder on the path.",
        formatter_class=fmt,
        epilog="""examples:
  %(prog)s myapp:receiver        # receiver = Receiver(secret, inbox=Inbox("inbox.db", autostart=False))
  %(prog)s myapp:outbox          # outbox = Outbox("webhooks.db")""",
    )
    p.add_argument("app", metavar="APP", help="module:attribute of a Receiver with an inbox, or of an Outbox")
    p.set_defaults(func=cmd_worker)
