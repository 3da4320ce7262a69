"""``outbox DB ...``: an operator's view of an outbox: endpoints, their health, dead deliveries, retries.

    python -m webhooklite outbox webhooks.db stats
    python -m webhooklite outbox postgresql://app@db/app dead --endpoint 2
    python -m webhooklite outbox webhooks.db recover --since 2h

Every action is a call of the :class:`~webhooklite.Outbox` API (nothing here touches the tables),
so what the command line does is what the library does. It never delivers: ``retry`` and
``recover`` make deliveries due now, and the workers (``outbox.start()``, ``python -m webhooklite
worker``) send them. Tables for a person, ``--json`` for a script; secrets are never printed (nor
header values, nor a password in a URL).

Exit status: 0 done; 1 what was named does not exist or cannot be done (an unknown delivery or
endpoint, a retry to a disabled endpoint, a database that cannot be reached); 2 a usage error
(bad option or duration, no such file, a file that is not an outbox).
"""
import argparse
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from . import admin
from .output import OK, Style, UsageError, clean, print_json, status_text, table, write

__all__ = ["register"]


def _endpoint_json(e: Any) -> Dict[str, Any]:
    return {"id": e.id, "url": admin.safe_url(e.url), "tenant": e.tenant, "events": list(e.events),
            "scheme": e.scheme, "header_names": sorted(e.headers), "timeout": e.timeout, "enabled": e.enabled,
            "disabled_reason": e.disabled_reason, "created": e.created, "last_success": e.last_success,
            "failing_since": e.failing_since}


def _delivery_json(d: Any, body: bool = False) -> Dict[str, Any]:
    out = {k: getattr(d, k) for k in ("id", "message_id", "endpoint_id", "event", "state", "attempts", "tries",
                                        "next_at", "last_status", "last_error", "created", "updated", "tenant",
                                        "key")}
    out["url"] = admin.safe_url(d.url) if d.url else None
    if body:
        out["body"] = d.body.decode("utf-8", "replace")
    return out


def _state(enabled: bool, reason: Optional[str], failing: Optional[float]) -> str:
    if not enabled:
        return f"disabled: {reason}" if reason else "disabled"
    return f"failing since {admin.ago(failing)}" if failing is not None else "enabled"


def _paint(lines: List[str], colours: Sequence[Optional[str]], style: Style) -> List[str]:
    """Colour whole rows of a table (after it is laid out, so the columns stay aligned)."""
    return lines[:1] + [style(line, c) if c else line for line, c in zip(lines[1:], colours)]


# -- the actions ----------------------------------------------------------------------


def _endpoints(ob: Any, args: argparse.Namespace, style: Style) -> int:
    eps = ob.endpoints()
    if args.json:
        print_json([_endpoint_json(e) for e in eps])
        return OK
    if not eps:
        write("no endpoints")
        return OK
    rows = [(e.id, admin.safe_url(e.url), e.tenant, ",".join(e.events), e.scheme,
             _state(e.enabled, e.disabled_reason, e.failing_since)) for e in eps]
    lines = table(("ID", "URL", "TENANT", "EVENTS", "SCHEME", "STATE"), rows, style)
    colours = [None if e.enabled and e.failing_since is None else style.YELLOW if e.enabled else style.RED
               for e in eps]
    for line in _paint(lines, colours, style):
        write(line)
    return OK


def _add_endpoint(ob: Any, args: argparse.Namespace, style: Style) -> int:
    secrets = list(args.secret or [])
    if "-" in secrets:  # from stdin, so it is in no shell history and no process list
        line = sys.stdin.readline().strip()
        if not line:
            raise UsageError("--secret -: no secret on stdin")
        secrets = [line if s == "-" else s for s in secrets]
    headers: Dict[str, str] = {}
    for item in args.header or []:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"-H {item!r} is not 'Name: value'")
        headers[name.strip()] = value.strip()
    existed = any(e.url == args.url and e.tenant == args.tenant for e in ob.endpoints())
    try:
        eid = ob.add_endpoint(args.url, (secrets[0] if len(secrets) == 1 else secrets) if secrets else None,
                              events=args.events, tenant=args.tenant, scheme=args.scheme,
                              headers=headers or None, timeout=args.timeout)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.json:
        print_json({"id": eid, "created": not existed})
    else:
        write(f"endpoint {eid} {'updated (and enabled)' if existed else 'added'}: {admin.safe_url(args.url)}")
    return OK


def _disable(ob: Any, args: argparse.Namespace, style: Style) -> int:
    ob.disable_endpoint(admin.endpoint_ref(args.endpoint), reason=args.reason)
    return _said(args, {"endpoint": args.endpoint, "enabled": False, "reason": args.reason},
                 f"endpoint {args.endpoint} disabled: {args.reason}; its deliveries wait until it is enabled")


def _enable(ob: Any, args: argparse.Namespace, style: Style) -> int:
    ref = admin.endpoint_ref(args.endpoint)
    ob.enable_endpoint(ref)
    waiting = ob.stats()[_id(ob, ref)]["pending"]
    return _said(args, {"endpoint": args.endpoint, "enabled": True, "pending": waiting},
                 f"endpoint {args.endpoint} enabled: {waiting} pending delivery(ies) go out as workers run")


def _id(ob: Any, ref: Any) -> int:
    if isinstance(ref, int):
        return ref
    return int(next(e.id for e in ob.endpoints() if e.url == ref))


def _deliveries(ob: Any, args: argparse.Namespace, style: Style) -> int:
    state = "dead" if args.action == "dead" else args.state
    endpoint = None if args.endpoint is None else admin.endpoint_ref(args.endpoint)
    found = ob.deliveries(state, endpoint=endpoint, limit=args.limit)
    if args.json:
        print_json([_delivery_json(d) for d in found])
        return OK
    if not found:
        write(f"no {state + ' ' if state else ''}deliveries")
        return OK
    now = time.time()
    rows = [(d.id, d.message_id, d.event, d.endpoint_id, d.state, d.attempts,
             status_text(d.last_status, d.last_error) if (d.last_status or d.last_error) else None,
             admin.ago(d.updated, now)) for d in found]
    lines = table(("ID", "MESSAGE", "EVENT", "ENDPOINT", "STATE", "ATTEMPTS", "LAST ANSWER", "UPDATED"), rows, style)
    colours = [style.RED if d.state == "dead" else style.GREEN if d.state == "delivered" else None for d in found]
    for line in _paint(lines, colours, style):
        write(line)
    return OK


def _attempts(ob: Any, args: argparse.Namespace, style: Style) -> int:
    d = ob.delivery(args.delivery)
    attempts = ob.attempts(d.id)
    if args.json:
        out = _delivery_json(d, body=True)
        out["attempts_log"] = [{"at": a.at, "status": a.status, "duration": a.duration, "error": a.error,
                                "response": a.response.decode("utf-8", "replace")} for a in attempts]
        print_json(out)
        return OK
    write(f"delivery {d.id}: message {clean(d.message_id)} ({clean(d.event)}) to endpoint {d.endpoint_id} "
          f"{clean(admin.safe_url(d.url or '?'))}: {d.state}, {d.attempts} attempt(s)")
    if not attempts:
        write("no attempts yet")
        return OK
    now = time.time()
    rows = [(n, admin.ago(a.at, now), status_text(a.status, a.error), admin.seconds_text(a.duration),
             a.response[:60].decode("utf-8", "replace") or None) for n, a in enumerate(attempts, 1)]
    lines = table(("#", "AT", "ANSWER", "TIME", "BODY"), rows, style)
    colours = [style.GREEN if a.status is not None and 200 <= a.status < 300 else style.RED for a in attempts]
    for line in _paint(lines, colours, style):
        write(line)
    return OK


def _retry(ob: Any, args: argparse.Namespace, style: Style) -> int:
    d = ob.delivery(args.delivery)
    changed = ob.retry(d.id)
    text = (f"delivery {d.id} ({d.message_id}) is due now, on a fresh schedule" if changed
            else f"delivery {d.id} is being sent right now: left as it is")
    return _said(args, {"delivery": d.id, "message_id": d.message_id, "due_now": changed}, text)


def _recover(ob: Any, args: argparse.Namespace, style: Style) -> int:
    since = time.time() - args.since
    endpoint = None if args.endpoint is None else admin.endpoint_ref(args.endpoint)
    n, skipped = ob._recover(since, endpoint)
    left = sum(skipped.values())
    text = f"{n} dead delivery(ies) since {_utc(since)} due now, each on a fresh schedule"
    if left:
        text += (f"; {left} left dead: their endpoint(s) {', '.join(map(str, sorted(skipped)))} are disabled "
                 "(enable, then recover again)")
    return _said(args, {"recovered": n, "since": since, "left_dead": {str(k): v for k, v in skipped.items()}}, text)


def _stats(ob: Any, args: argparse.Namespace, style: Style) -> int:
    stats = ob.stats()
    if args.json:
        print_json({str(k): dict(v, url=admin.safe_url(v["url"])) for k, v in stats.items()})
        return OK
    if not stats:
        write("no endpoints")
        return OK
    now = time.time()
    rows = []
    for eid, s in stats.items():
        h = s["last_hour"]
        rate = None if h["success_rate"] is None else f"{h['success_rate'] * 100:.0f}%"
        rows.append((eid, admin.safe_url(s["url"]), _state(s["enabled"], None, s["failing_since"]), s["pending"],
                     s["delivered"], s["dead"], admin.ago(s["last_success"], now), h["attempts"], rate,
                     admin.seconds_text(h["p50"]), admin.seconds_text(h["p99"])))
    lines = table(("ID", "URL", "STATE", "PENDING", "DELIVERED", "DEAD", "LAST SUCCESS", "1H ATTEMPTS", "1H OK",
                   "P50", "P99"), rows, style)
    colours = [style.RED if not s["enabled"] else style.YELLOW if s["failing_since"] is not None else None
               for s in stats.values()]
    for line in _paint(lines, colours, style):
        write(line)
    return OK


def _purge(ob: Any, args: argparse.Namespace, style: Style) -> int:
    n = ob.purge(older_than=args.older_than)
    return _said(args, {"purged": n}, f"{n} delivered delivery(ies) last changed over {admin.span(args.older_than)} "
                 "ago forgotten, with their attempts")


def _said(args: argparse.Namespace, value: Dict[str, Any], text: str) -> int:
    if args.json:
        print_json(value)
    else:
        write(clean(text))
    return OK


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))


_ACTIONS = {
    "endpoints": _endpoints, "add-endpoint": _add_endpoint, "disable": _disable, "enable": _enable,
    "deliveries": _deliveries, "dead": _deliveries, "attempts": _attempts, "retry": _retry, "recover": _recover,
    "stats": _stats, "purge": _purge,
}


def cmd_outbox(args: argparse.Namespace) -> int:
    return admin.run_action(args, "outbox", _ACTIONS)


# -- the command line ----------------------------------------------------------------------


def register(sub: "argparse._SubParsersAction[Any]", fmt: Any) -> None:
    """Add ``outbox DB ACTION`` to the command line."""
    p = sub.add_parser(
        "outbox",
        help="an outbox's endpoints, health, dead deliveries, retries (DB: a sqlite file or postgresql:// URL)",
        description="Look after an outbox: its endpoints and their health, the deliveries that died, and sending "
        "them again. DB is the outbox's sqlite file or its postgresql:// URL. Nothing here delivers: retry and "
        "recover make deliveries due now, and the outbox's workers send them.",
        formatter_class=fmt,
        epilog="""examples:
  %(prog)s webhooks.db stats
  %(prog)s webhooks.db dead
  %(prog)s webhooks.db attempts 42
  %(prog)s webhooks.db enable 2 && %(prog)s webhooks.db recover --since 2h --endpoint 2
  %(prog)s postgresql://app@db.internal/app endpoints --json

exit status: 0 done, 1 not found or not possible (unknown id, disabled endpoint, database unreachable),
2 a usage error (bad option, no such file, not an outbox).""",
    )
    p.add_argument("db", metavar="DB", help="the outbox: a sqlite file or a postgresql:// URL")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    def action(name: str, help: str) -> argparse.ArgumentParser:
        a: argparse.ArgumentParser = actions.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".")
        admin.add_json(a)
        return a

    action("endpoints", "list the endpoints (never their secrets)")
    a = action("add-endpoint", "add an endpoint, or update the one with this URL (and enable it)")
    a.add_argument("url", metavar="URL")
    a.add_argument("--secret", action="append", metavar="S", help="its signing secret (repeat while keys rotate; "
                   "- reads it from stdin); kept when not given")
    a.add_argument("--events", nargs="+", metavar="PATTERN", help="event types it gets, e.g. 'payment.*' "
                   "(default: every event)")
    a.add_argument("--tenant", metavar="T", help="the tenant it belongs to")
    a.add_argument("--scheme", choices=("standard", "github", "stripe"), help="signature scheme")
    a.add_argument("-H", "--header", action="append", metavar="'NAME: VALUE'", help="an extra request header")
    a.add_argument("--timeout", type=admin.duration, metavar="DURATION", help="per attempt, e.g. 10s")
    a = action("disable", "pause an endpoint: its deliveries wait until it is enabled")
    a.add_argument("endpoint", metavar="ID", help="endpoint id or URL")
    a.add_argument("--reason", default="disabled by hand", help="recorded with it")
    a = action("enable", "deliver to an endpoint again, with everything that waited")
    a.add_argument("endpoint", metavar="ID", help="endpoint id or URL")
    for name, help in (("dead", "deliveries that failed for good, newest first"),
                       ("deliveries", "deliveries, newest first")):
        a = action(name, help)
        if name == "deliveries":
            a.add_argument("--state", choices=("pending", "delivered", "dead"))
        a.add_argument("--endpoint", metavar="ID", help="only this endpoint's (id or URL)")
        a.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (default 50)")
    a = action("attempts", "one delivery and every attempt of it: when, the answer, how long, its first bytes")
    a.add_argument("delivery", type=int, metavar="ID", help="delivery id")
    a = action("retry", "send a dead (or delivered) delivery again, same message id, fresh schedule")
    a.add_argument("delivery", type=int, metavar="ID", help="delivery id")
    a = action("recover", "send again every delivery that died since a time")
    a.add_argument("--since", type=admin.duration, required=True, metavar="DURATION",
                   help="how far back: 90s, 30m, 2h, 7d...")
    a.add_argument("--endpoint", metavar="ID", help="only this endpoint's (it must be enabled)")
    action("stats", "per endpoint: state, deliveries by state, last success, the last hour's success rate and "
           "p50/p99 attempt time")
    a = action("purge", "forget delivered deliveries (and their attempts) older than a duration")
    a.add_argument("--older-than", type=admin.duration, default=7 * 86400.0, metavar="DURATION", help="default 7d")
    p.set_defaults(func=cmd_outbox)
