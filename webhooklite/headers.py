"""Case-insensitive, read-only HTTP headers (pure; no I/O)."""
from typing import Any, Iterator, Mapping, Optional

__all__ = ["Headers", "parse_uint", "check_header_value"]


def parse_uint(text: str, max_digits: int = 18) -> Optional[int]:
    """A header's whole non-negative number, or None.

    Only ASCII digits count: ``str.isdigit()`` alone also accepts "²" and
    "١٢٣", which ``int()`` then refuses or reads as another number.
    """
    text = text.strip()
    if text and len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


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

    def __init__(self, items: Optional[Any] = None) -> None:
        if isinstance(items, Headers):
            self._d = items._d
            return
        d = {}  # type: dict
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
    def _from_lower(cls, d: dict) -> "Headers":
        """Wrap a dict whose keys are already lower case (a transport's fast path)."""
        h = cls.__new__(cls)
        h._d = d
        return h

    def __getitem__(self, name: str) -> str:
        return self._d[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return self._d.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._d

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"Headers({self._d!r})"
