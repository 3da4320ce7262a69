"""Events: the JSON envelope, event type and id extraction, routing (pure: no I/O).

The envelope a Sender puts on the wire for ``send("payment.completed", data)``::

    {"event":"payment.completed", <the caller's fields>, "time":"2026-04-14T08:30:00Z"}
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping

from .errors import PayloadError
from .headers import Headers, check_header_value

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see webhooklite/__init__.py)
if TYPE_CHECKING:
    import datetime
    import json
    from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

__all__ = ["Event", "encode_json", "encode_event", "decode_body", "event_type", "event_id", "event_from", "Router", "utc"]

# -- encoding ----------------------------------------------------------------
# json, re, enum, datetime, decimal, uuid and dataclasses are not imported here (`import
# webhooklite` stays light): json on the first encode or decode, and a value can only be a
# datetime, Decimal, UUID or Enum once its module is loaded (sys.modules says whether it is);
# a dataclass instance is what dataclasses.is_dataclass() looks for, a class with
# __dataclass_fields__.


def _is_dataclass_instance(o: Any) -> bool:
    return hasattr(type(o), "__dataclass_fields__") and not isinstance(o, type)


def _asdict(o: Any) -> Any:
    import dataclasses

    return dataclasses.asdict(o)


def _iso(value: Any) -> str:
    text: str = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _default(encoder: Any, o: Any) -> Any:
    """The rich encoder's ``default()``: the types a webhook payload commonly holds."""
    datetime = sys.modules.get("datetime")  # a datetime exists only once its module is loaded
    if datetime is not None and isinstance(o, (datetime.datetime, datetime.date, datetime.time)):
        return _iso(o)
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(o, decimal.Decimal):
        if not o.is_finite():
            raise ValueError(f"{o} is not a JSON number")
        # json cannot emit raw number text from default(); mark it, unquote after.
        encoder.saw_decimal = True
        return f"{encoder.marker}{o}{encoder.marker}"
    uuid = sys.modules.get("uuid")
    if uuid is not None and isinstance(o, uuid.UUID):
        return str(o)
    enum = sys.modules.get("enum")
    if enum is not None and isinstance(o, enum.Enum):
        return o.value
    if _is_dataclass_instance(o):
        return _asdict(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, (bytes, bytearray)):
        raise TypeError("bytes are not JSON; decode them or base64 them first")
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


#: (json, the plain encoder, the rich encoder's class, the decoder), made on first use.
_JSON: Any = None


def _json() -> Any:
    global _JSON
    if _JSON is None:
        import json

        class Encoder(json.JSONEncoder):
            """JSON encoder for the types a webhook payload commonly holds (see ``_default``)."""

            def __init__(self, marker: str) -> None:
                super().__init__(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
                self.marker = marker
                self.saw_decimal = False

            def default(self, o: Any) -> Any:
                return _default(self, o)

        # Plain JSON types (the usual payload) need no default(): one shared encoder for them.
        plain = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        # One decoder for every body: json.loads() with an argument builds a new one per call (3-4 us).
        _JSON = (json, plain, Encoder, json.JSONDecoder(parse_constant=_no_constant))
    return _JSON


def _check_keys(value: Any, depth: int) -> None:
    """Refuse keys that are not strings, at any depth: json would write ``{1: a, "1": b}``
    as two ``"1"`` keys, which parsers read differently (first wins, last wins)."""
    if depth > 200:
        return  # deeper than any payload; json itself refuses what recursion cannot encode
    if isinstance(value, dict):
        for k, v in value.items():
            if type(k) is not str:
                raise TypeError(
                    f"JSON object keys are strings, not {type(k).__name__} ({k!r}): convert them "
                    "yourself (json would turn 1 into \"1\" and could write the same key twice)"
                )
            if type(v) in _CONTAINERS:
                _check_keys(v, depth + 1)
    elif isinstance(value, (list, tuple)):
        for v in value:
            if type(v) in _CONTAINERS:
                _check_keys(v, depth + 1)


_CONTAINERS = (dict, list, tuple)


def encode_json(value: Any) -> bytes:
    """Encode ``value`` as compact UTF-8 JSON, non-ASCII unescaped.

    datetime/date (ISO 8601), Decimal (its exact digits), UUID, Enum (its
    value) and dataclasses are encoded; anything else json cannot encode is a
    TypeError.
    """
    _check_keys(value, 0)
    json, plain, rich, _ = _JSON or _json()
    try:
        text: str = plain.encode(value)
        return text.encode("utf-8")
    except TypeError:
        pass  # a datetime, Decimal, UUID, dataclass...: the full encoder says what it can do
    marker = "\x00dec" + os.urandom(6).hex() + "\x00"
    enc = rich(marker)
    text = enc.encode(value)
    if enc.saw_decimal:
        import re

        # json escapes the NUL in the marker as \u0000.
        m = re.escape(json.dumps(marker)[1:-1])
        text = re.sub('"' + m + "(.*?)" + m + '"', r"\1", text)
    return text.encode("utf-8")


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def encode_event(
    event: str, data: Any = None, *, id: Optional[str] = None, now: Optional[Callable[[], str]] = None
) -> bytes:
    """Build the wire body for ``event``: ``event`` first, the fields, then ``time``.

    ``data`` is a mapping or a dataclass. ``time`` (RFC 3339, UTC, whole
    seconds) is added unless ``data`` has one. A field named ``event`` in
    ``data`` is a ValueError. ``id`` puts the message id in the body, after
    ``event``: schemes that sign no id (Stripe) dedupe on the body's ``id``,
    so a field named ``id`` in ``data`` is then a ValueError too. Keys are
    strings: any other key (``{1: ...}``, which JSON would turn into ``"1"``
    beside a real ``"1"``) is a TypeError, at any depth.
    """
    if not isinstance(event, str) or not event:
        raise ValueError("the event type is a non-empty string, e.g. 'payment.completed'")
    check_header_value("the event type", event)  # it goes into X-GitHub-Event too
    if data is None:
        fields: Mapping[str, Any] = {}
    elif _is_dataclass_instance(data):
        fields = _asdict(data)
    elif isinstance(data, dict) or isinstance(data, Mapping):  # dict first: typing's check is slow
        fields = data
    else:
        raise TypeError(
            f"event data is a dict (or a dataclass), not {type(data).__name__}; "
            "use Sender.post() to send other JSON as is"
        )
    if "event" in fields:
        raise ValueError(
            "the data has a field named 'event', which the envelope uses for the event "
            "type; rename it (or use Sender.post() to send your own JSON as is)"
        )
    body: Dict[str, Any] = {"event": event}
    if id is not None:
        if "id" in fields:
            raise ValueError(
                "the data has a field named 'id', which this scheme's envelope uses for the message "
                "id (receivers dedupe on it); rename it, or pass it as the message id (id=...)"
            )
        body["id"] = id
    body.update(fields)
    if "time" not in body:
        body["time"] = (now or _now_rfc3339)()
    return encode_json(body)


# -- decoding ----------------------------------------------------------------


class _NotJSON(ValueError):
    pass


def _no_constant(name: str) -> Any:
    # Python's json reads NaN, Infinity and -Infinity, which JSON (RFC 8259) does not have and
    # encode_json refuses: a body carrying them is not JSON.
    raise _NotJSON(name)


def decode_body(body: bytes, content_type: Optional[str] = None) -> Any:
    """Parse a webhook body: JSON, or GitHub's form encoding (``payload=<json>``).

    Raises PayloadError with a message that says what is wrong.
    """
    if content_type and content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded":
        try:
            from urllib.parse import parse_qs

            form = parse_qs(body.decode("utf-8"), strict_parsing=False)
        except UnicodeDecodeError:
            raise PayloadError("the form body is not valid UTF-8") from None
        if "payload" not in form:
            raise PayloadError("a form-encoded body must carry the JSON in a 'payload' field")
        body = form["payload"][0].encode("utf-8")
    if not body or body.isspace():
        raise PayloadError("the body is empty; a webhook carries JSON")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PayloadError(f"the body is not valid UTF-8 (byte {e.start})") from None
    decoder = (_JSON or _json())[3]
    try:
        # One JSON value and nothing around it (every sender's body): json's C scanner alone. Anything
        # else (white space around it, an error) goes through decode(), which says what is wrong.
        value, end = decoder.scan_once(text, 0)
        if end == len(text):
            return value
    except Exception:
        pass
    try:
        return decoder.decode(text)
    except _NotJSON as e:
        raise PayloadError(f"the body is not valid JSON: {e} is not a JSON value") from None
    except ValueError as e:
        if hasattr(e, "lineno"):  # a json.JSONDecodeError
            where = f"{getattr(e, 'msg', e)} at line {getattr(e, 'lineno')} column {getattr(e, 'colno')}"
            raise PayloadError(f"the body is not valid JSON: {where}") from None
        raise PayloadError(f"the body is not valid JSON: {e}") from None  # e.g. an int over int()'s digit limit
    except RecursionError:
        # json's C scanner counts its recursion: deep nesting ends here, not in a crash.
        raise PayloadError("the JSON is nested too deeply") from None


def event_type(headers: Headers, data: Any, scheme: Optional[str] = "standard") -> Optional[str]:
    """The event type of a delivery under ``scheme``.

    With ``scheme="github"``, ``X-GitHub-Event`` (+ ``.action`` when the body
    has one); otherwise the body's ``event``, else its ``type``, else None.
    GitHub does not sign that header, so no other scheme reads it: an unsigned
    header must not re-route a signed body. ``scheme=None`` guesses from the
    headers (for showing a delivery, never for routing one).
    """
    if scheme == "github" or (scheme is None and "x-github-event" in headers):
        gh = headers.get("x-github-event")
        if gh:
            action = data.get("action") if isinstance(data, dict) else None
            return f"{gh}.{action}" if isinstance(action, str) and action else gh
    if isinstance(data, dict):
        for key in ("event", "type"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def event_id(
    headers: Headers,
    data: Any,
    scheme: Optional[str] = None,
    *,
    signed_id: Optional[str] = None,
    timestamp: Optional[int] = None,
    body: Optional[bytes] = None,
    signed: bool = False,
) -> Optional[str]:
    """The message id a receiver dedupes on.

    Under a signature (``signed=True``) only what the signature covers counts:
    standard, the verified ``webhook-id``/``svix-id`` (``signed_id``); stripe,
    the body's ``id``, else a digest of the signed timestamp and body; github,
    ``X-GitHub-Delivery`` (GitHub signs only the body: a replay with a new
    delivery id looks new). Unsigned (development), or ``scheme=None`` (for
    showing a delivery): ``webhook-id``/``svix-id``/``X-GitHub-Delivery``, else
    the body's ``id``.
    """
    if signed:
        if scheme == "standard":
            return signed_id
        if scheme == "stripe":
            value = data.get("id") if isinstance(data, dict) else None
            if isinstance(value, str) and value:
                return value
            import hashlib

            digest = hashlib.sha256(f"{timestamp}.".encode("ascii") + (body or b"")).hexdigest()
            return "sha256:" + digest[:32]
        return headers.get("x-github-delivery") or None
    for name in ("webhook-id", "svix-id", "x-github-delivery"):
        found: Optional[str] = headers.get(name)
        if found:
            return found
    if isinstance(data, dict):
        value = data.get("id")
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)
    return None


def utc(ts: Optional[int]) -> Optional[datetime.datetime]:
    """A Unix timestamp as an aware UTC datetime (None for None, or one out of range)."""
    if ts is None:
        return None
    global _last_utc
    last = _last_utc
    if last[0] == ts:  # whole seconds: deliveries in the same second share one (immutable) datetime
        return last[1]
    import datetime  # on the first signed delivery, not at `import webhooklite`

    try:
        when = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    _last_utc = (ts, when)  # one tuple: a thread reading it sees a pair that matches
    return when


#: The last timestamp utc() turned into a datetime, and that datetime.
_last_utc: Tuple[Optional[int], Optional[datetime.datetime]] = (None, None)


def event_from(
    scheme: str,
    headers: Headers,
    body: bytes,
    data: Any,
    timestamp: Optional[int],
    signed_id: Optional[str],
    *,
    signed: bool,
) -> "Event":
    """The Event for a delivery whose signature (if ``signed``) was checked: type and id by the scheme's rules."""
    eid = event_id(headers, data, scheme, signed_id=signed_id, timestamp=timestamp, body=body, signed=signed)
    return Event(event_type(headers, data, scheme), eid, utc(timestamp), data, headers, body)


if TYPE_CHECKING:
    _EventBase = Mapping[str, Any]
else:  # the same class, without typing's Any at run time
    _EventBase = Mapping


class Event(_EventBase):
    """One received webhook.

    ``event["item"]`` reads the parsed body (``event.data``); ``event.type``,
    ``event.id`` and ``event.timestamp`` come from the headers and body.
    """

    __slots__ = ("type", "id", "timestamp", "data", "headers", "body")

    def __init__(
        self,
        type: Optional[str],
        id: Optional[str],
        timestamp: Optional[datetime.datetime],
        data: Any,
        headers: Headers,
        body: bytes,
    ) -> None:
        #: The event type, e.g. "payment.completed" or "issues.opened"; None if unknown.
        self.type = type
        #: The message id (the same on every retry), or None.
        self.id = id
        #: When the sender signed it (UTC, aware), or None (GitHub signs no time).
        self.timestamp = timestamp
        #: The parsed JSON body.
        self.data = data
        #: The request headers, case-insensitive.
        self.headers = headers
        #: The raw body bytes, exactly as received.
        self.body = body

    def _fields(self) -> Mapping[str, Any]:
        return self.data if isinstance(self.data, dict) else {}

    def __getitem__(self, key: str) -> Any:
        if not isinstance(self.data, dict):
            raise KeyError(key)
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields())

    def __len__(self) -> int:
        return len(self._fields())

    def __bool__(self) -> bool:
        return True  # a Mapping is falsy when empty; a verified event with an empty body is still one

    def __repr__(self) -> str:
        return f"Event(type={self.type!r}, id={self.id!r})"


# -- routing -----------------------------------------------------------------

if TYPE_CHECKING:
    Handler = Callable[[Event], Any]


def is_async(fn: Any) -> bool:
    """Whether calling ``fn`` makes a coroutine: an ``async def`` function, a partial of one, or an
    object whose ``__call__`` is one (``inspect.iscoroutinefunction`` without importing inspect)."""
    functools = sys.modules.get("functools")  # a partial exists only once functools is loaded
    while functools is not None and isinstance(fn, functools.partial):
        fn = fn.func
    code = getattr(fn, "__code__", None) or getattr(getattr(fn, "__call__", None), "__code__", None)
    return bool(getattr(code, "co_flags", 0) & 0x80)  # CO_COROUTINE


def _fnmatchcase(name: str, pattern: str) -> bool:
    from fnmatch import fnmatchcase  # loaded with the first wildcard pattern (routers cache their answers)

    return fnmatchcase(name, pattern)


def matches(patterns: Union[str, Iterable[str]], etype: Optional[str]) -> bool:
    """Whether an event type matches a pattern, or any of several (the one rule for routing and fan-out).

    Patterns are shell-style (``fnmatch.fnmatchcase``): ``"payment.completed"``, ``"payment.*"``,
    ``"*"``. An event with no type (None) matches only ``"*"``.
    """
    for p in (patterns,) if isinstance(patterns, str) else patterns:
        if etype is None:
            if p == "*":
                return True
        elif p == etype or (("*" in p or "?" in p or "[" in p) and _fnmatchcase(etype, p)):
            return True
    return False


class Router:
    """Event-type patterns to handlers; every match runs, in registration order.

    Patterns are shell-style (``fnmatch.fnmatchcase``): ``"payment.completed"``,
    ``"payment.*"``, ``"*"``. An event with no type is seen only by ``"*"``.
    A handler may be an ``async def`` function: the transport awaits it.
    """

    def __init__(self) -> None:
        self._routes: List[Tuple[str, bool, Handler]] = []
        #: Whether any handler is an ``async def`` function (the ASGI transport then awaits them on its loop).
        self.has_async = False
        self._cache: Dict[Optional[str], Tuple[Handler, ...]] = {}

    def add(self, pattern: str, handler: Handler) -> None:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError("a pattern is a non-empty string such as 'payment.*' or '*'")
        if not callable(handler):
            raise TypeError(f"the handler for {pattern!r} is not callable")
        wild = any(c in pattern for c in "*?[")
        self._routes.append((pattern, wild, handler))
        self._cache.clear()
        self.has_async = self.has_async or is_async(handler)

    def match(self, etype: Optional[str]) -> Tuple[Handler, ...]:
        """The handlers for ``etype``, in registration order."""
        found = self._cache.get(etype)
        if found is None:
            found = tuple(h for p, _, h in self._routes if matches(p, etype))
            if len(self._cache) < 4096:  # bounded: types come from untrusted bodies
                self._cache[etype] = found
        return found

    def __len__(self) -> int:
        return len(self._routes)
