"""HTTP/1.1 grammar, written once for every transport, and case-insensitive headers (pure; no I/O).

The grammar of RFC 9110 / RFC 9112 that webhooklite parses or checks (token,
field line, field value, Content-Length, Transfer-Encoding list, Host,
request line, chunk size) is here, as h11 writes it once in ``_abnf.py``:
the built-in server, the WSGI and ASGI apps, the Sender and the CLI call
these functions instead of keeping their own copies. The regular
expressions are compiled when first used, not at ``import webhooklite``.
"""
from __future__ import annotations

from collections.abc import Mapping

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see webhooklite/__init__.py)
if TYPE_CHECKING:
    import re
    from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

__all__ = [
    "Headers",
    "parse_uint",
    "check_header_value",
    "is_token",
    "is_field_value",
    "parse_field_section",
    "remember_valid",
    "split_field_line",
    "parse_list",
    "parse_content_length",
    "is_host",
    "parse_request_line",
    "origin_path",
    "parse_chunk_size",
]


# -- the grammar, as regular expressions over latin-1 text ------------------------------------

#: token = 1*tchar; tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
#: "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA (RFC 9110 §5.6.2). A field name is a token.
TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
#: One character of a field value, its surrounding white space included. RFC 9110 §5.5: CR,
#: LF and NUL are invalid and dangerous (refused); like h11 we also refuse VT and FF, which
#: some parsers take for white space, and keep the other control characters (real
#: cookies carry \x01). Nothing beyond latin-1: a header is bytes.
FIELD_CHAR = r"[\x01-\x09\x0e-\xff]"
#: field-line = field-name ":" OWS field-value OWS (RFC 9112 §5): no white space before the
#: colon, none at the start of a line (obs-fold, §5.2, is refused, not unfolded). Groups: name, value.
FIELD_LINE = "(" + TOKEN + "):(" + FIELD_CHAR + "*)"
#: request-line = method SP request-target SP HTTP-version (RFC 9112 §3), single spaces;
#: the target is visible ASCII or obs-text (bytes \x80-\xff, read as latin-1).
REQUEST_LINE = r"(" + TOKEN + r") ([\x21-\x7e\x80-\xff]+) HTTP/([0-9]\.[0-9])\r?\n"
#: absolute-form = absolute-URI (RFC 9112 §3.2.2): scheme "://" authority, then the path.
ABSOLUTE_FORM = r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*([^#]*)"
#: Host = uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2); empty is allowed.
HOST = r"(?:\[[0-9A-Za-z._~!$&'()*+,;=:-]+\]|(?:[0-9A-Za-z._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?"
#: quoted-string (RFC 9110 §5.6.4).
QUOTED_STRING = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
#: chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1): hex digits (at most 16: 2**64), then
#: *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ), then CRLF, never a bare LF.
CHUNK_LINE = (
    r"([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*" + TOKEN
    + r"(?:[ \t]*=[ \t]*(?:" + TOKEN + "|" + QUOTED_STRING + r"))?)*\r\n"
)

if TYPE_CHECKING:
    _Match = Callable[[str], Optional["re.Match[str]"]]


class _Lazy:
    """A regular expression compiled at its first use (compiling them all costs ~1 ms of import)."""

    __slots__ = ("source", "fullmatch")

    def __init__(self, source: str) -> None:
        self.source = source
        self.fullmatch: _Match = self._compile

    def _compile(self, text: str) -> Optional["re.Match[str]"]:
        import re  # compiled on first use: `import webhooklite` loads no regular expressions

        self.fullmatch = re.compile(self.source).fullmatch
        return self.fullmatch(text)


_TOKEN = _Lazy(TOKEN)
_FIELD_VALUE = _Lazy(FIELD_CHAR + "*")
_FIELD_LINE = _Lazy(FIELD_LINE)
_REQUEST_LINE = _Lazy(REQUEST_LINE)
_ABSOLUTE_FORM = _Lazy(ABSOLUTE_FORM)
_HOST = _Lazy(HOST)
_CHUNK_LINE = _Lazy(CHUNK_LINE)


def is_token(text: str) -> bool:
    """Whether ``text`` is an RFC 9110 token: a valid header name, method or transfer coding."""
    return _TOKEN.fullmatch(text) is not None


def is_field_value(text: str) -> bool:
    """Whether ``text`` may be a header's value: no NUL, CR, LF, VT or FF, nothing beyond latin-1.

    Surrounding spaces and tabs are not part of a value; the transports strip them.
    """
    return _FIELD_VALUE.fullmatch(text) is not None


def parse_field_section(text: str, max_lines: int = 100) -> Optional[Dict[str, str]]:
    """Header lines joined by CRLF (no final CRLF) as ``{lower-case name: value}``, or None.

    None unless every line is a valid field line (what :func:`split_field_line` accepts), there
    are ``max_lines`` at most, and Host comes once at most. A name on two lines gets both values
    joined with ", " (RFC 9110 §5.3); values lose their surrounding spaces and tabs. The check is
    made with str methods, in a third of the regular expression's time: CR and LF only in the
    CRLFs between lines, no NUL, VT or FF, nothing beyond latin-1, and each name a token before
    its colon (a name seen valid before is not matched again).
    """
    lines = text.split("\r\n")
    n = len(lines) - 1
    if n >= max_lines or text.count("\r") != n or text.count("\n") != n:
        return None
    if "\x00" in text or "\x0b" in text or "\x0c" in text:
        return None
    if not text.isascii() and max(text) > "\xff":
        return None
    headers: Dict[str, str] = {}
    names = _NAMES
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or (name not in names and not remember_valid(names, name, is_token, 256)):
            return None
        key = name.lower()
        value = value.strip(" \t")
        if key in headers:
            if key == "host":  # RFC 9112 §3.2: more than one Host is refused (by the caller's slow path)
                return None
            headers[key] += ", " + value
        else:
            headers[key] = value
    return headers


#: Header names seen valid, as sent (see remember_valid).
_NAMES: Dict[str, bool] = {}


def remember_valid(memo: Dict[str, bool], text: str, valid: Callable[[str], bool], size: int) -> bool:
    """``valid(text)``, and if so ``text`` remembered in ``memo`` (up to ``size`` entries).

    A sender repeats its header names, Host and request line on every request: the caller looks
    in ``memo`` first and matches the grammar only for what it has not seen.
    """
    if not valid(text):
        return False
    if len(memo) < size:
        memo[text] = True
    return True


def split_field_line(line: str) -> Optional[Tuple[str, str]]:
    """``(name, value)`` of one header line (its line end removed), the value's OWS stripped; None if invalid."""
    m = _FIELD_LINE.fullmatch(line)
    return None if m is None else (m.group(1), m.group(2).strip(" \t"))


def parse_list(value: str) -> List[str]:
    """The elements of a comma-separated list header (RFC 9110 §5.6.1), empty ones dropped."""
    return [item for item in (part.strip(" \t") for part in value.split(",")) if item]


def parse_uint(text: str, max_digits: int = 18) -> Optional[int]:
    """A header's whole non-negative number, or None.

    Only ASCII digits count: ``str.isdigit()`` alone also accepts "²" and
    "١٢٣", which ``int()`` then refuses or reads as another number.
    """
    text = text.strip()
    if text and len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


def parse_content_length(value: str) -> Optional[int]:
    """Content-Length (RFC 9110 §8.6) as an int, or None when it is not a valid one.

    ``1*DIGIT``; a list of identical values (``13, 13``: two header lines joined, or a
    proxy's folding) counts as one, as RFC 9110 allows and h11 does; differing values,
    an empty element, a sign or any other character make it invalid.
    """
    if value.isdigit():  # the usual case ("١٢" too, which parse_uint then refuses)
        return parse_uint(value)
    found: Optional[int] = None
    for part in value.split(","):
        part = part.strip(" \t")
        # Digits at both ends, so parse_uint's own strip() (any white space) changes nothing.
        n = parse_uint(part) if part[:1].isdigit() and part[-1:].isdigit() else None
        if n is None or (found is not None and n != found):
            return None
        found = n
    return found


def is_host(value: str) -> bool:
    """Whether ``value`` is a valid Host header value (``uri-host [":" port]``, possibly empty)."""
    return _HOST.fullmatch(value) is not None


def parse_request_line(line: str) -> Optional[Tuple[str, str, str]]:
    """``(method, target, version)`` of a request line ending in CRLF or LF, e.g. ``("POST", "/", "1.1")``; None if malformed."""
    m = _REQUEST_LINE.fullmatch(line)
    return None if m is None else m.groups()  # type: ignore[return-value]


def origin_path(target: str) -> str:
    """The path and query of a request target: an absolute-form ``http://host/p?q`` gives ``/p?q``.

    Any other form (origin-form ``/p?q``, ``*``, authority-form) is returned as it is.
    """
    if target[:1] == "/":
        return target
    m = _ABSOLUTE_FORM.fullmatch(target)
    if m is None:
        return target
    path = m.group(1)
    return path if path[:1] == "/" else "/" + path


def parse_chunk_size(line: str) -> Optional[int]:
    """The size of a chunk from its size line, CRLF included (extensions ignored); None if malformed."""
    m = _CHUNK_LINE.fullmatch(line)
    return None if m is None else int(m.group(1), 16)


def check_header_value(what: str, value: str) -> None:
    """Refuse CR, LF and NUL in a value bound for a header: no header injection."""
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError(f"{what} may not contain CR, LF or NUL: {value[:60]!r}")


class Headers(Mapping[str, str]):
    """A read-only mapping of HTTP header names to values, ignoring case.

    Built from a dict, a list of ``(name, value)`` pairs, an
    ``email.message.Message`` or another ``Headers``. A name that repeats has
    its values joined with ``", "`` as RFC 9110 allows.
    """

    __slots__ = ("_d",)
    _d: Dict[str, str]

    def __init__(self, items: Optional[Any] = None) -> None:
        if isinstance(items, Headers):
            self._d = items._d
            return
        d: Dict[str, str] = {}
        if items is not None:
            pairs = items.items() if hasattr(items, "items") else items
            for name, value in pairs:
                key = name.lower()
                if key in d:
                    d[key] = d[key] + ", " + value
                else:
                    d[key] = value
        self._d = d

    @classmethod
    def _from_lower(cls, d: Dict[str, str]) -> "Headers":
        """Wrap a dict whose keys are already lower case (a transport's fast path)."""
        h = cls.__new__(cls)
        h._d = d
        return h

    def __getitem__(self, name: str) -> str:
        return self._d[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._d.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._d

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"Headers({self._d!r})"
