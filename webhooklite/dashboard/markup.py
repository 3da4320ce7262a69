"""HTML built in one place, so everything the dashboard shows is escaped in one place.

The pages are made of :func:`h` calls. A child or an attribute value that is not :class:`Markup`
(the output of :func:`h`, :func:`escape` or :func:`raw`) is data: it goes through :func:`escape`,
which writes every control, bidi and other invisible character the way the rest of the package
shows untrusted text (``webhooklite._text.escape``: ``\\x1b``, ``\\u202e``), then HTML-escapes it
(``&``, ``<``, ``>``, ``"`` and ``'``). So a stored body of ``<script>...</script>`` is shown as
those characters and is never markup. Tag and attribute names are the code's own and are checked.
"""
import html
import re
from typing import Iterable, List, Mapping, Optional, Union

from .._text import escape as _visible

__all__ = ["Markup", "escape", "h", "raw", "join"]

_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*\Z")  # viewBox: SVG has camelCase names
_VOID = frozenset(("br", "hr", "img", "input", "link", "meta"))


class Markup(str):
    """Text that is HTML already (made by this module): :func:`h` does not escape it again."""

    __slots__ = ()


#: What a child may be: markup, data (str, numbers: escaped), None (nothing), or a list of those.
Child = Union[Markup, str, int, float, None, Iterable["Child"]]


def escape(value: object) -> Markup:
    """``value`` as text in HTML: invisible characters shown (``\\u202e``), then ``& < > " '`` escaped."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(_visible(str(value), keep_lines=True), quote=True))


def raw(text: str) -> Markup:
    """Trusted HTML written by the code (a template), never data."""
    return Markup(text)


def _children(children: Iterable[Child]) -> str:
    out: List[str] = []
    for c in children:
        if c is None:
            continue
        if isinstance(c, (str, int, float)):
            out.append(escape(c))
        else:
            out.append(_children(c))
    return "".join(out)


def join(children: Iterable[Child], sep: str = "") -> Markup:
    """Children side by side (escaped as :func:`h` escapes them), ``sep`` (code, not data) between."""
    return Markup(sep.join(_children([c]) for c in children))


def h(tag: str, attrs: Optional[Mapping[str, object]] = None, *children: Child) -> Markup:
    """``<tag attrs>children</tag>``. An attribute whose value is None or False is left out; True is bare."""
    if not _NAME.match(tag):
        raise ValueError(f"not a tag name: {tag!r}")
    parts = ["<", tag]
    for name, value in (attrs or {}).items():
        if not _NAME.match(name):
            raise ValueError(f"not an attribute name: {name!r}")
        if value is None or value is False:
            continue
        parts.append(f" {name}" if value is True else f' {name}="{escape(value)}"')
    if tag in _VOID:
        if children:
            raise ValueError(f"<{tag}> has no children")
        return Markup("".join(parts) + ">")
    return Markup("".join(parts) + ">" + _children(children) + f"</{tag}>")
