"""Untrusted text made safe to print or log: one rule for the whole package.

What came from the network (a server's reason phrase or Location, a request line,
a JSON string in a body) must never reach a terminal or a log raw: an escape
sequence could drive the operator's terminal, a newline could forge a log line, a
bidi override could reorder what is read. :func:`escape` is that rule; the Sender
(``Delivery.error``), the built-in server's access log and the CLI call it.
"""
import re
from typing import Optional, Tuple

__all__ = ["escape", "UNSAFE_RANGES"]

#: What a terminal must never be sent raw from the network: every control character
#: (C0, DEL, C1: U+0080-U+009F, where 8-bit CSI and OSC live), the bidi overrides and
#: isolates (U+202A-U+202E, U+2066-U+2069) and every other format character that can
#: hide or reorder text (zero-width spaces and joiners, soft hyphen, BOM, tags), the
#: line and paragraph separators, and lone surrogates (which a JSON "\\ud800" yields).
#: That is Unicode's Cc, Cf, Zl, Zp and Cs categories (15.1; a test checks it against
#: the running Python's unicodedata).
UNSAFE_RANGES = (
    "\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f"
)
_compiled: Optional[Tuple["re.Pattern[str]", "re.Pattern[str]"]] = None  # (one line, keep lines): compiled on first use


def _patterns() -> Tuple["re.Pattern[str]", "re.Pattern[str]"]:
    global _compiled
    if _compiled is None:
        _compiled = (re.compile(f"[{UNSAFE_RANGES}]"), re.compile(f"(?![\t\n])[{UNSAFE_RANGES}]"))
    return _compiled


def _escape(m: "re.Match[str]") -> str:
    n = ord(m.group())
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def _escape_json(m: "re.Match[str]") -> str:
    n = ord(m.group())
    if n < 0x10000:
        return f"\\u{n:04x}"
    n -= 0x10000
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"  # JSON's surrogate pair


def escape(text: str, keep_lines: bool = False, in_json: bool = False) -> str:
    """Untrusted text made safe to print: every character in :data:`UNSAFE_RANGES` escaped.

    One line (a header, an id, an error) by default: ``\\x1b``, ``\\u202e``.
    ``keep_lines=True`` keeps tabs and newlines, for a body shown over
    several lines. ``in_json=True`` writes JSON's own escape (``\\u009b``), for
    text inside a JSON string that ``json.dumps(..., ensure_ascii=False)``
    made, so that what is shown is still JSON.
    """
    one_line, lines = _patterns()
    return (lines if keep_lines else one_line).sub(_escape_json if in_json else _escape, text)
