"""What the command line prints, in one place: colours, escaping, errors and exit statuses.

Every command writes through these helpers, so the rules hold everywhere:

- colour only on a terminal, never with ``NO_COLOR`` set (https://no-color.org)
  or ``TERM=dumb``;
- text that came from the network (or from a file a sender wrote) goes through
  :func:`clean` before it is printed: nothing a sender writes can drive the
  operator's terminal;
- an error is one line on stderr; the exit status is :data:`OK` (0),
  :data:`FAILED` (1) or :data:`USAGE` (2).

:func:`table` and :func:`print_json` are the two shapes a listing takes: aligned
columns for a person, JSON for a script (``--json``).
"""
import json
import os
import sys
from typing import Any, Iterable, List, Mapping, Optional, Sequence

from .._text import escape

__all__ = [
    "OK", "FAILED", "USAGE", "UsageError", "Failure", "Style", "colour_wanted", "clean", "write",
    "status_text", "body_preview", "show_body", "table", "print_json",
]

#: Exit statuses: it worked; it did not (no connection, a non-2xx answer, a bad signature); a usage error.
OK, FAILED, USAGE = 0, 1, 2
#: How much of a response or request body is printed (characters).
PRINT_CAP = 4000
#: How many lines of pretty-printed JSON are printed per delivery.
PRINT_LINES = 200


class UsageError(Exception):
    """A mistake in what the user typed (bad option, bad JSON, unreadable file): exit status 2."""


class Failure(Exception):
    """It did not work (no connection, port in use, a non-2xx answer): exit status 1."""


# -- colour ----------------------------------------------------------------------


def colour_wanted(stream: Any) -> bool:
    """Colour on a terminal only, and never when NO_COLOR is set or TERM is dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):
        return False


class Style:
    """ANSI colours, or plain text: ``style(text, style.RED)``."""

    BOLD, DIM, RED, GREEN, YELLOW, CYAN, MAGENTA = "1", "2", "31", "32", "33", "36", "35"

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @classmethod
    def for_stream(cls, stream: Any = None) -> "Style":
        """Colour if ``stream`` (default stdout) is a terminal that wants it."""
        return cls(colour_wanted(stream or sys.stdout))

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text

    def status(self, status: Optional[int], text: str) -> str:
        """``text`` in the colour of an HTTP status: green 2xx, yellow 3xx, red otherwise."""
        if status is None or status >= 400:
            return self(text, self.RED)
        return self(text, self.GREEN if status < 300 else self.YELLOW)


# -- escaping --------------------------------------------------------------------

def clean(text: str, keep_lines: bool = False, in_json: bool = False) -> str:
    """Untrusted text made safe to print (see ``webhooklite._text.escape``, the package's one rule)."""
    return escape(text, keep_lines, in_json)


# -- writing ---------------------------------------------------------------------


def write(text: str, stream: Any = None) -> None:
    """One piece of output and a newline, flushed; a closed stdout (``| head``) is not an error."""
    stream = stream or sys.stdout
    try:
        stream.write(text + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass  # stdout closed (piped into head): keep serving


def phrase(status: int) -> str:
    """``404`` -> ``"Not Found"``; ``""`` for a status with no name."""
    import http  # the package only (HTTPStatus), not http.client

    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def status_text(status: Optional[int], error: Optional[str] = None) -> str:
    """``"200 OK"``, ``"no answer: connection refused"``, or a redirect's explanation."""
    if status is None:
        return f"no answer: {error}" if error else "no answer"
    if 300 <= status < 400 and error:
        return error  # "302 Found: redirect to ... not followed"
    return f"{status} {phrase(status)}".strip()


def body_preview(body: bytes) -> str:
    """A body as text for a person: decoded, capped at :data:`PRINT_CAP` characters, escaped."""
    if not body:
        return ""
    text = body.decode("utf-8", "replace")
    more = ""
    if len(text) > PRINT_CAP:
        more = f"\n... ({len(body) - len(text[:PRINT_CAP].encode('utf-8'))} more bytes)"
        text = text[:PRINT_CAP]
    return clean(text, keep_lines=True) + more


class _Number(str):
    """A JSON number's exact text (so 25.00 is printed as 25.00, not 25.0)."""


def _json_string(text: str) -> str:
    """A JSON string as shown: readable (é stays é), with nothing unsafe in it."""
    # json.dumps escapes C0 controls only; clean() does the rest (C1, bidi, DEL...).
    return clean(json.dumps(text, ensure_ascii=False), in_json=True)


def _pretty(value: Any, style: Style, indent: str = "") -> str:
    """JSON, indented, coloured by token type when the style is on."""
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = indent + "  "
        items = [
            f"{inner}{style(_json_string(k), style.CYAN)}: {_pretty(v, style, inner)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        inner = indent + "  "
        return "[\n" + ",\n".join(inner + _pretty(v, style, inner) for v in value) + "\n" + indent + "]"
    if isinstance(value, _Number):
        return style(str(value), style.YELLOW)
    if isinstance(value, str):
        return style(_json_string(value), style.GREEN)
    return style(json.dumps(value), style.MAGENTA)  # true, false, null


def show_body(h: Mapping[str, str], body: bytes, style: Style) -> List[str]:
    """The lines that show a body: pretty JSON when it is JSON, else text, else its size."""
    if not body:
        return ["  (empty body)"]
    text: Optional[str]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return [f"  ({len(body)} bytes, not UTF-8)"]
    ctype = (h.get("content-type") or "").split(";", 1)[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        from urllib.parse import parse_qs

        text = (parse_qs(text).get("payload") or [text])[0]
    try:
        value = json.loads(text, parse_int=_Number, parse_float=_Number, parse_constant=_Number)
        pretty = _pretty(value, style)
    except (ValueError, RecursionError):
        return ["  " + line for line in body_preview(body).splitlines()]
    lines = pretty.splitlines()
    if len(lines) > PRINT_LINES:
        lines = lines[:PRINT_LINES] + [f"... ({len(lines) - PRINT_LINES} more lines)"]
    return ["  " + line for line in lines]


# -- listings: a table for a person, JSON for a script ----------------------------


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], style: Optional[Style] = None) -> List[str]:
    """Aligned columns under a header line; every cell is escaped (cells may come from the network).

    ``None`` is shown as ``-``; the header line is bold when ``style`` is on.
    """
    cells = [[clean("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        if len(row) != len(columns):
            raise ValueError(f"a row has {len(row)} cells for {len(columns)} columns")
        widths = [max(w, len(c)) for w, c in zip(widths, row)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()

    head = line(list(columns))
    return [style(head, style.BOLD) if style else head] + [line(row) for row in cells]


def print_json(value: Any, stream: Any = None) -> None:
    """``value`` as JSON for a script: one document, ASCII only (so no byte of it can drive a terminal)."""
    write(json.dumps(value, indent=2, ensure_ascii=True, sort_keys=False, default=str), stream)
