"""The dashboard's pages, rendered on the server from what :mod:`.views` reads; every piece through :func:`.markup.h`.

Each page function returns ``(title, body)``; :func:`document` puts the body in the page template
(``static/page.html``). Times are ``<time data-t="unix seconds">`` in UTC: the page's script shows
them as "5m ago" and keeps that current. Actions are forms that POST with the page's CSRF token
(see ``server.py``); they work without the script too.
"""
import string
import time
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from ..cli.admin import safe_url, seconds_text
from ..cli.output import Style, body_preview, show_body, status_text
from .markup import Child, Markup, escape, h, join
from .views import BUCKETS, WINDOW, Health, Slot

__all__ = ["Context", "document", "endpoints_page", "endpoint_page", "delivery_page", "dead_page", "inbox_page",
           "event_page", "message_page"]

#: Request headers of a stored inbox event whose values are not shown (they may carry credentials).
HIDDEN_HEADERS = frozenset(("authorization", "proxy-authorization", "cookie", "x-api-key"))
#: Rows per listing page.
PAGE = 50


class Context(NamedTuple):
    """What every page needs besides its data."""

    csrf: str  #: the token the forms carry
    path: str  #: this page's path and query: where an action comes back to
    note: Optional[Tuple[str, str]]  #: ("ok" or "error", text) after an action, or None
    parts: Tuple[str, ...]  #: "outbox", "inbox": what the database holds
    where: str  #: the database, as the Outbox/Inbox names it (no password)
    refresh: float  #: seconds between the script's refreshes


Page = Tuple[str, Markup]


# -- small pieces -----------------------------------------------------------------------------


def when(t: Optional[float], none: str = "never") -> Markup:
    """A time: UTC text, which the script turns into "5m ago" (the exact time stays in its title)."""
    if t is None:
        return h("span", {"class": "muted"}, none)
    text = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    return h("time", {"datetime": iso, "data-t": f"{t:.3f}", "title": text}, text)


def badge(kind: str, text: Child) -> Markup:
    return h("span", {"class": f"badge {kind}"}, text)


def state_badge(state: str) -> Markup:
    kind = {"delivered": "ok", "done": "ok", "dead": "bad", "pending": "warn"}.get(state, "")
    return badge(kind, state)


def answer(status: Optional[int], error: Optional[str]) -> Markup:
    """An attempt's outcome: "200 OK" (green), "500 Internal Server Error", "no answer: timed out"."""
    if status is None and not error:
        return h("span", {"class": "muted"}, "-")
    ok = status is not None and 200 <= status < 300
    return h("span", {"class": "ok-text" if ok else "bad-text"}, status_text(status, error))


def form(ctx: Context, action: str, *controls: Child, fields: Optional[Dict[str, object]] = None,
         label: str = "", cls: str = "", title: Optional[str] = None) -> Markup:
    """A POST form to ``action`` with the CSRF token and the way back to this page."""
    hidden = [h("input", {"type": "hidden", "name": k, "value": v}) for k, v in (fields or {}).items()]
    return h(
        "form", {"method": "post", "action": action, "class": "action"},
        h("input", {"type": "hidden", "name": "csrf", "value": ctx.csrf}),
        h("input", {"type": "hidden", "name": "back", "value": ctx.path}),
        hidden, controls,
        h("button", {"type": "submit", "class": cls or None, "title": title}, label) if label else None,
    )


def since_form(ctx: Context, action: str, verb: str, what: str, fields: Optional[Dict[str, object]] = None) -> Markup:
    """"<verb> since [1h] ago": a duration as the command line takes it (90s, 30m, 2h, 7d)."""
    return form(
        ctx, action,
        h("label", None, f"{verb} since ",
          h("input", {"name": "since", "value": "1h", "size": 5, "required": True, "class": "since",
                      "pattern": r"\s*(\d+(\.\d+)?[smhdwSMHDW]?)+\s*", "title": "90s, 30m, 2h, 7d, 1h30m",
                      "aria-label": f"{verb} since (a duration: 90s, 30m, 2h, 7d)"}),
          " ago"),
        h("button", {"type": "submit"}, f"{verb}\u2026"),
        h("span", {"class": "hint"}, what),
        fields=fields,
    )


def facts(rows: Iterable[Tuple[str, Child]]) -> Markup:
    return h("dl", {"class": "facts"}, [(h("dt", None, k), h("dd", None, v)) for k, v in rows])


def table(head: Sequence[str], rows: Sequence[Sequence[Any]], empty: str, cls: str = "") -> Markup:
    if not rows:
        return h("p", {"class": "empty"}, empty)
    return h("table", {"class": cls or None},
             h("thead", None, h("tr", None, [h("th", None, c) for c in head])),
             h("tbody", None, [h("tr", None, [h("td", None, c) for c in row]) for row in rows]))


def body_text(headers: Any, body: bytes) -> Markup:
    """A body as a person reads it (pretty JSON, else text, else its size), escaped, in a <pre>."""
    lines = show_body(headers, body, Style(False))  # the CLI's rule: JSON pretty-printed, capped
    return h("pre", {"class": "body"}, "\n".join(line[2:] if line.startswith("  ") else line for line in lines))


def percent(rate: Optional[float]) -> str:
    return "-" if rate is None else f"{rate * 100:.0f}%" if rate in (0.0, 1.0) or rate >= 0.1 else f"{rate * 100:.1f}%"


def sparkline(slots: Sequence[Slot]) -> Markup:
    """Each slot as a bar (inline SVG, no script): its green part is the share of attempts that succeeded,
    its red part the share that failed; a slot without attempts is a grey tick."""
    width, height, bar = 6, 18, 5
    bars = []
    for i, s in enumerate(slots):
        x = i * width
        start = time.strftime("%H:%M", time.gmtime(s.start))
        if not s.attempts:
            bars.append(h("rect", {"x": x, "y": height - 1, "width": bar, "height": 1, "class": "none"},
                          h("title", None, f"{start} UTC: no attempts")))
            continue
        tip = h("title", None, f"{start} UTC: {s.succeeded} of {s.attempts} attempts succeeded")
        good = round(height * s.succeeded / s.attempts, 1)
        if good < height:
            bars.append(h("rect", {"x": x, "y": 0, "width": bar, "height": f"{height - good:g}", "class": "bad"}, tip))
        if good > 0:
            bars.append(h("rect", {"x": x, "y": f"{height - good:g}", "width": bar, "height": f"{good:g}",
                                   "class": "ok"}, tip))
    minutes = WINDOW / BUCKETS / 60
    label = f"success rate over the last hour, in {minutes:g}-minute slots (oldest first)"
    return h("svg", {"class": "spark", "viewBox": f"0 0 {len(slots) * width} {height}", "width": len(slots) * width,
                     "height": height, "role": "img", "aria-label": label, "xmlns": "http://www.w3.org/2000/svg"},
             h("title", None, label), bars)


def link(href: str, text: Child) -> Markup:
    return h("a", {"href": href}, text)


def endpoint_link(eid: int, url: Optional[str]) -> Markup:
    return h("span", {"class": "endpoint"}, link(f"/endpoints/{eid}", f"#{eid}"), " ",
             h("span", {"class": "url"}, safe_url(url or "?")))


def delivery_row(ctx: Context, d: Any, show_endpoint: Optional[Dict[int, str]] = None) -> List[Child]:
    """A delivery in a listing; with ``show_endpoint`` (id -> URL), its endpoint instead of its state (all dead)."""
    row: List[Child] = [link(f"/deliveries/{d.id}", f"#{d.id}")]
    if show_endpoint is not None:
        row.append(endpoint_link(d.endpoint_id, show_endpoint.get(d.endpoint_id, d.url)))
    row += [h("code", None, d.event), h("code", {"class": "id"}, d.message_id)]
    if show_endpoint is None:
        row.append(state_badge(d.state))
    row += [d.attempts, answer(d.last_status, d.last_error), when(d.updated)]
    row.append(form(ctx, f"/deliveries/{d.id}/retry", label="Retry", title="send it again now, same message id")
               if d.state == "dead" else "")
    return row


# -- the page around a body -------------------------------------------------------------------


def document(template: str, ctx: Context, page: Page) -> bytes:
    """The whole HTML document: the template with the title, the navigation and the body filled in."""
    title, body = page
    items = []
    if "outbox" in ctx.parts:
        items += [("/", "Endpoints"), ("/dead", "Dead deliveries")]
    if "inbox" in ctx.parts:
        items.append(("/inbox", "Inbox"))
    path = ctx.path.split("?", 1)[0]
    current = "/inbox" if path.startswith("/inbox") else "/dead" if path == "/dead" else "/"
    nav = join(h("a", {"href": href, "class": "current" if href == current else None}, text) for href, text in items)
    note = None
    if ctx.note is not None:
        note = h("p", {"class": f"note {ctx.note[0]}", "role": "status"}, ctx.note[1])
    filled = string.Template(template).substitute(
        title=escape(title), where=escape(ctx.where), nav=nav, refresh=escape(f"{ctx.refresh:g}"),
        body=join([note, body]),
    )
    return filled.encode("utf-8")


def message_page(title: str, text: str) -> Page:
    return title, h("section", None, h("h1", None, title), h("p", None, text))


# -- outbox pages -------------------------------------------------------------------------------


def _state(e: Any) -> Markup:
    if not e.enabled:
        return join([badge("bad", "disabled"), " ", h("span", {"class": "hint"}, e.disabled_reason or "")])
    if e.failing_since is not None:
        return join([badge("warn", "failing"), " since ", when(e.failing_since)])
    return badge("ok", "healthy")


def _toggle(ctx: Context, e: Any) -> Markup:
    if e.enabled:
        return form(ctx, f"/endpoints/{e.id}/disable", label="Disable", cls="danger",
                    title="pause it: its deliveries wait until it is enabled")
    return form(ctx, f"/endpoints/{e.id}/enable", label="Enable", title="deliver to it again, with what waited")


def endpoints_page(ctx: Context, health: List[Health]) -> Page:
    pending = sum(x.stats.get("pending", 0) for x in health)
    dead = sum(x.stats.get("dead", 0) for x in health)
    off = sum(not x.endpoint.enabled for x in health)
    rows = []
    for x in health:
        e, s = x.endpoint, x.stats
        hour = s.get("last_hour") or {}
        n = hour.get("attempts") or 0
        rate = join([percent(hour.get("success_rate")), h("span", {"class": "hint"}, f" of {n}")]) if n else \
            h("span", {"class": "muted"}, "no attempts")
        timing = f"{seconds_text(hour.get('p50'))} / {seconds_text(hour.get('p99'))}" if n else "-"
        dead_n = s.get("dead", 0)
        rows.append([
            join([endpoint_link(e.id, e.url), h("div", {"class": "hint"}, ", ".join(e.events),
                                                f" \u00b7 tenant {e.tenant}" if e.tenant else None)]),
            _state(e), when(e.last_success), s.get("pending", 0),
            link(f"/dead?endpoint={e.id}", dead_n) if dead_n else 0,
            h("span", {"class": "nowrap"}, sparkline(x.slots), " ", rate), h("span", {"class": "nowrap"}, timing),
            _toggle(ctx, e),
        ])
    summary = h("p", {"class": "summary"}, f"{len(health)} endpoint(s) \u00b7 {pending} pending \u00b7 ",
                link("/dead", f"{dead} dead") if dead else "0 dead", f" \u00b7 {off} disabled" if off else None)
    return "Endpoints", h(
        "section", None, h("h1", None, "Endpoints"), summary,
        table(("Endpoint", "State", "Last success", "Pending", "Dead", "Last hour", "p50 / p99", ""), rows,
              "No endpoints yet: outbox.add_endpoint(url, secret=...) adds one.", cls="endpoints"),
    )


def endpoint_page(ctx: Context, e: Any, stats: Dict[str, Any], slots: List[Slot], deliveries: List[Any],
                  state: Optional[str], before: Optional[int]) -> Page:
    hour = stats.get("last_hour") or {}
    n = hour.get("attempts") or 0
    info = facts([
        ("URL", h("span", {"class": "url"}, safe_url(e.url))),
        ("State", _state(e)),
        ("Events", ", ".join(e.events)),
        ("Tenant", e.tenant or h("span", {"class": "muted"}, "none")),
        ("Scheme", e.scheme),
        ("Timeout", f"{e.timeout:g} s"),
        ("Extra headers", ", ".join(sorted(e.headers)) or h("span", {"class": "muted"}, "none")),
        ("Last success", when(e.last_success)),
        ("Deliveries", f"{stats.get('pending', 0)} pending \u00b7 {stats.get('delivered', 0)} delivered \u00b7 "
                       f"{stats.get('dead', 0)} dead"),
        ("Last hour", join([sparkline(slots), " ", f"{percent(hour.get('success_rate'))} of {n} attempts"
                            + (f", p50 {seconds_text(hour.get('p50'))}, p99 {seconds_text(hour.get('p99'))}" if n
                               else "")])),
        ("Added", when(e.created)),
    ])
    actions = h("div", {"class": "actions"}, _toggle(ctx, e),
                since_form(ctx, "/recover", "Recover", "send this endpoint's dead deliveries from that time again",
                           fields={"endpoint": e.id}))
    base = f"/endpoints/{e.id}"
    tabs = join(
        h("a", {"href": base + (f"?state={s}" if s else ""), "class": "current" if s == state else None}, text)
        for s, text in ((None, "All"), ("pending", "Pending"), ("delivered", "Delivered"), ("dead", "Dead")))
    rows = [delivery_row(ctx, d) for d in deliveries]
    more = None
    if len(deliveries) >= PAGE:
        query = (f"state={state}&" if state else "") + f"before={deliveries[-1].id}"
        more = h("p", None, link(f"{base}?{query}", "Older deliveries \u2192"))
    heading = "Recent deliveries" if before is None else f"Deliveries before #{before}"
    return f"Endpoint #{e.id}", h(
        "section", None, h("h1", None, f"Endpoint #{e.id}"), info, actions,
        h("h2", None, heading), h("nav", {"class": "tabs"}, tabs),
        table(("Delivery", "Event", "Message id", "State", "Attempts", "Last answer", "Updated", ""), rows,
              "No deliveries here.", cls="deliveries"), more,
    )


def delivery_page(ctx: Context, d: Any, attempts: List[Any]) -> Page:
    retry_label = {"dead": "Retry", "delivered": "Send again"}.get(d.state, "Attempt now")
    info = facts([
        ("Endpoint", endpoint_link(d.endpoint_id, d.url)),
        ("Event", h("code", None, d.event)),
        ("Message id", h("code", None, d.message_id)),
        ("State", state_badge(d.state)),
        ("Attempts", f"{d.attempts}" + (f" ({d.tries} on this schedule)" if d.tries != d.attempts else "")),
        ("Next attempt", when(d.next_at, "none") if d.state == "pending" else h("span", {"class": "muted"}, "none")),
        ("Last answer", answer(d.last_status, d.last_error)),
        ("Tenant", d.tenant or h("span", {"class": "muted"}, "none")),
        ("Ordering key", d.key or h("span", {"class": "muted"}, "none")),
        ("Created", when(d.created)),
        ("Updated", when(d.updated)),
    ])
    rows = [[i, when(a.at), answer(a.status, a.error), seconds_text(a.duration),
             h("pre", {"class": "snippet"}, body_preview(a.response)) if a.response else
             h("span", {"class": "muted"}, "(empty)")]
            for i, a in enumerate(attempts, 1)]
    return f"Delivery #{d.id}", h(
        "section", None, h("h1", None, f"Delivery #{d.id}"), info,
        h("div", {"class": "actions"}, form(ctx, f"/deliveries/{d.id}/retry", label=retry_label,
                                            title="send it now, with the same message id")),
        h("h2", None, "Attempts"),
        table(("#", "At", "Answer", "Took", "What the endpoint answered (first bytes)"), rows, "No attempts yet.",
              cls="attempts"),
        h("h2", None, "Body sent"), body_text({"content-type": "application/json"}, d.body),
    )


def dead_page(ctx: Context, dead: List[Any], urls: Dict[int, str], endpoint: Optional[int]) -> Page:
    rows = [delivery_row(ctx, d, urls) for d in dead]
    which = f" of endpoint #{endpoint}" if endpoint is not None else ""
    recover = since_form(ctx, "/recover", "Recover",
                         "send every delivery that died in that time again (same message ids)"
                         + (" to this endpoint" if endpoint is not None else ""),
                         fields={"endpoint": endpoint} if endpoint is not None else None)
    return "Dead deliveries", h(
        "section", None, h("h1", None, f"Dead deliveries{which}"),
        h("p", {"class": "hint"}, "Every attempt failed, or the endpoint answered 410 Gone. Retry sends one again now "
                                  "on a fresh schedule; the workers (outbox.start(), python -m webhooklite worker) "
                                  "deliver it."),
        h("div", {"class": "actions"}, recover),
        table(("Delivery", "Endpoint", "Event", "Message id", "Attempts", "Last answer", "Died", ""), rows,
              "No dead deliveries.", cls="dead"),
    )


# -- inbox pages --------------------------------------------------------------------------------


def event_row(ctx: Context, e: Any) -> List[Child]:
    return [link(f"/inbox/events/{e.id}", f"#{e.id}"), h("code", None, e.type or "-"),
            h("code", {"class": "id"}, e.message_id), state_badge(e.state), e.attempts,
            h("span", {"class": "bad-text"}, (e.last_error or "")[:200]) if e.last_error else "",
            when(e.received),
            form(ctx, f"/inbox/events/{e.id}/retry", label="Retry", title="run its failed handlers again now")
            if e.state == "dead" else ""]


def inbox_page(ctx: Context, stats: Dict[str, Any], dead: List[Any], recent: List[Any], state: Optional[str]) -> Page:
    oldest = stats.get("oldest_pending")
    summary = h("p", {"class": "summary"}, f"{stats.get('pending', 0)} pending \u00b7 {stats.get('done', 0)} done "
                f"\u00b7 {stats.get('dead', 0)} dead",
                f" \u00b7 the oldest pending event was received {oldest:.0f} s ago" if oldest is not None else None)
    handlers = [[h("code", None, name), s["succeeded"], s["failures"]] for name, s in stats.get("handlers", {}).items()]
    head = ("Event", "Type", "Message id", "State", "Attempts", "Last error", "Received", "")
    tabs = join(
        h("a", {"href": "/inbox" + (f"?state={s}" if s else ""), "class": "current" if s == state else None}, text)
        for s, text in ((None, "All"), ("pending", "Pending"), ("done", "Done"), ("dead", "Dead")))
    return "Inbox", h(
        "section", None, h("h1", None, "Inbox"), summary,
        h("div", {"class": "actions"},
          since_form(ctx, "/inbox/replay", "Replay", "run every handler again for the events received in that time")),
        h("h2", None, "Dead events"),
        table(head, [event_row(ctx, e) for e in dead], "No dead events.", cls="dead-events"),
        h("h2", None, "Handlers"), table(("Handler", "Succeeded", "Failed runs"), handlers, "No handler has run yet."),
        h("h2", None, "Recent events"), h("nav", {"class": "tabs"}, tabs),
        table(head, [event_row(ctx, e) for e in recent], "No events here.", cls="events"),
    )


def event_page(ctx: Context, e: Any) -> Page:
    info = facts([
        ("Type", h("code", None, e.type or "-")),
        ("Message id", h("code", None, e.message_id)),
        ("State", state_badge(e.state)),
        ("Attempts", e.attempts),
        ("Next attempt", when(e.next_at, "none") if e.state == "pending" else h("span", {"class": "muted"}, "none")),
        ("Last error", h("span", {"class": "bad-text"}, e.last_error) if e.last_error else
         h("span", {"class": "muted"}, "none")),
        ("Signed at", when(e.timestamp.timestamp() if e.timestamp else None, "not signed with a timestamp")),
        ("Received", when(e.received)),
        ("Updated", when(e.updated)),
    ])
    runs = [[h("code", None, r.name), badge("ok", "done") if r.done is not None else badge("bad", "failed"),
             when(r.done, "-"), r.failures, h("span", {"class": "bad-text"}, r.last_error) if r.last_error else ""]
            for r in e.handlers]
    headers = [[h("code", None, k), h("span", {"class": "muted"}, "(hidden)") if k.lower() in HIDDEN_HEADERS
                else h("code", None, v)] for k, v in e.headers.items()]
    return f"Event #{e.id}", h(
        "section", None, h("h1", None, f"Inbox event #{e.id}"), info,
        h("div", {"class": "actions"},
          form(ctx, f"/inbox/events/{e.id}/retry", label="Retry", title="run the handlers that have not succeeded")
          if e.state == "dead" else None),
        h("h2", None, "Handlers"),
        table(("Handler", "State", "Succeeded at", "Failed runs", "Last error"), runs, "No handler has run yet."),
        h("h2", None, "Body received"), body_text(e.headers, e.body),
        h("h2", None, "Headers received"), table(("Name", "Value"), headers, "No headers."),
    )
