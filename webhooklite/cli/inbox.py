"""``inbox DB ...``: an operator's view of an inbox: stored events, dead ones, retries and replays.

    python -m webhooklite inbox inbox.db stats
    python -m webhooklite inbox inbox.db dead
    python -m webhooklite inbox inbox.db replay --since 2h

Every action is a call of the :class:`~webhooklite.Inbox` API. Nothing here runs a handler:
``retry`` and ``replay`` make events due now, and the inbox's workers (the serving process, or
``python -m webhooklite worker myapp:receiver``) run them. Exit statuses as for ``outbox``: 0 done,
1 not found or not possible, 2 a usage error (no such file, a file that is not an inbox).
"""
import argparse
import time
from typing import Any, Dict, List

from . import admin
from .output import OK, Style, clean, print_json, show_body, table, write

__all__ = ["register"]


def _event_json(e: Any) -> Dict[str, Any]:
    return {"id": e.id, "message_id": e.message_id, "type": e.type, "state": e.state, "attempts": e.attempts,
            "tries": e.tries, "next_at": e.next_at, "last_error": e.last_error, "received": e.received,
            "updated": e.updated, "timestamp": e.timestamp.timestamp() if e.timestamp else None}


def _events(ib: Any, args: argparse.Namespace, style: Style) -> int:
    state = "dead" if args.action == "dead" else args.state
    since = None if getattr(args, "since", None) is None else time.time() - args.since
    found = ib.events(state, since=since, limit=args.limit)
    if args.json:
        print_json([_event_json(e) for e in found])
        return OK
    if not found:
        write(f"no {state + ' ' if state else ''}events")
        return OK
    now = time.time()
    rows = [(e.id, e.message_id, e.type, e.state, e.attempts, (e.last_error or "")[:80] or None,
             admin.ago(e.received, now)) for e in found]
    lines = table(("ID", "MESSAGE", "TYPE", "STATE", "ATTEMPTS", "LAST ERROR", "RECEIVED"), rows, style)
    colours = [style.RED if e.state == "dead" else style.GREEN if e.state == "done" else None for e in found]
    for line, colour in zip(lines, [None] + colours):
        write(style(line, colour) if colour else line)
    return OK


def _show(ib: Any, args: argparse.Namespace, style: Style) -> int:
    e = ib.event(args.event)  # a message id, else a row id
    if args.json:
        out = _event_json(e)
        out["handlers"] = [{"name": h.name, "done": h.done, "failures": h.failures, "last_error": h.last_error}
                           for h in e.handlers]
        out["body"] = e.body.decode("utf-8", "replace")
        print_json(out)
        return OK
    write(f"event {e.id}: message {clean(e.message_id)} ({clean(str(e.type))}), {e.state}, {e.attempts} "
          f"attempt(s), received {admin.ago(e.received)}")
    if e.handlers:
        rows = [(h.name, "done" if h.done is not None else "failed", h.failures, (h.last_error or "")[:80] or None)
                for h in e.handlers]
        for line in table(("HANDLER", "STATE", "FAILURES", "LAST ERROR"), rows, style):
            write(line)
    for line in show_body(e.headers, e.body, style):
        write(line)
    return OK


def _retry(ib: Any, args: argparse.Namespace, style: Style) -> int:
    e = ib.event(args.event)  # a message id, else a row id
    changed = ib.retry(e.id)
    text = (f"event {e.id} ({e.message_id}): its handlers that have not succeeded run again now" if changed
            else f"event {e.id} is pending already: left as it is")
    return _said(args, {"event": e.id, "message_id": e.message_id, "due_now": changed}, text)


def _replay(ib: Any, args: argparse.Namespace, style: Style) -> int:
    since = time.time() - args.since
    n = ib.replay(since)
    return _said(args, {"replayed": n, "since": since},
                 f"{n} event(s) received since {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(since))} "
                 "will run every handler again")


def _stats(ib: Any, args: argparse.Namespace, style: Style) -> int:
    s = ib.stats()
    if args.json:
        print_json(s)
        return OK
    oldest = s["oldest_pending"]
    write(f"events: {s['pending']} pending, {s['done']} done, {s['dead']} dead"
          + (f"; the oldest pending was received {oldest:.0f}s ago" if oldest is not None else ""))
    if s["handlers"]:
        rows: List[Any] = [(name, h["succeeded"], h["failures"]) for name, h in s["handlers"].items()]
        for line in table(("HANDLER", "SUCCEEDED", "FAILED RUNS"), rows, style):
            write(line)
    return OK


def _purge(ib: Any, args: argparse.Namespace, style: Style) -> int:
    n = ib.purge(older_than=args.older_than)
    return _said(args, {"purged": n}, f"{n} done event(s) last changed over {admin.span(args.older_than)} ago forgotten")


def _said(args: argparse.Namespace, value: Dict[str, Any], text: str) -> int:
    if args.json:
        print_json(value)
    else:
        write(clean(text))
    return OK


_ACTIONS = {"events": _events, "dead": _events, "show": _show, "retry": _retry, "replay": _replay,
            "stats": _stats, "purge": _purge}


def cmd_inbox(args: argparse.Namespace) -> int:
    return admin.run_action(args, "inbox", _ACTIONS)


def register(sub: "argparse._SubParsersAction[Any]", fmt: Any) -> None:
    """Add ``inbox DB ACTION`` to the command line."""
    p = sub.add_parser(
        "inbox",
        help="an inbox's stored events, dead ones, retries and replays (DB: a sqlite file or postgresql:// URL)",
        description="Look after an inbox: the events it stored, those whose handlers failed for good, and running "
        "handlers again. DB is the inbox's sqlite file or its postgresql:// URL. Nothing here runs a handler: the "
        "inbox's workers do.",
        formatter_class=fmt,
        epilog="""examples:
  %(prog)s inbox.db stats
  %(prog)s inbox.db dead
  %(prog)s inbox.db show msg_2bV...
  %(prog)s inbox.db retry 17
  %(prog)s inbox.db replay --since 2h

exit status: 0 done, 1 not found or not possible, 2 a usage error (bad option, no such file, not an inbox).""",
    )
    p.add_argument("db", metavar="DB", help="the inbox: a sqlite file or a postgresql:// URL")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    def action(name: str, help: str) -> argparse.ArgumentParser:
        a: argparse.ArgumentParser = actions.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".")
        admin.add_json(a)
        return a

    for name, help in (("dead", "events whose handlers failed on every attempt, newest first"),
                       ("events", "stored events, newest first")):
        a = action(name, help)
        if name == "events":
            a.add_argument("--state", choices=("pending", "done", "dead"))
            a.add_argument("--since", type=admin.duration, metavar="DURATION", help="received in the last 2h, 7d...")
        a.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (default 50)")
    a = action("show", "one event: its handlers' runs and its body")
    a.add_argument("event", metavar="ID", help="event id or message id")
    a = action("retry", "run a dead (or done) event's handlers that have not succeeded, now")
    a.add_argument("event", metavar="ID", help="event id or message id")
    a = action("replay", "run every handler again for the events received since a time")
    a.add_argument("--since", type=admin.duration, required=True, metavar="DURATION", help="2h, 7d...")
    action("stats", "events by state, and per handler its successes and failed runs")
    a = action("purge", "forget done events (and their handler records) older than a duration")
    a.add_argument("--older-than", type=admin.duration, default=7 * 86400.0, metavar="DURATION", help="default 7d")
    p.set_defaults(func=cmd_inbox)
