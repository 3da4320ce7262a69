"""What the admin commands (``outbox DB ...``, ``inbox DB ...``) share: opening DB, durations, times.

DB is a sqlite file or a ``postgresql://`` URL. It is looked at before it is opened, read only,
so a typo never creates a file and a foreign file is never touched: a path that does not exist
is "no such outbox file", a file that is not sqlite or holds no webhooklite tables says so, and
so does a database without the part asked for. Then the part is opened as the library opens it
(an older webhooklite's tables are migrated in place, as every process that opens them does).
"""
import argparse
import os
import re
import time
from typing import Any, Optional
from urllib.parse import quote, urlsplit, urlunsplit

from .output import Failure, UsageError

__all__ = ["duration", "span", "open_part", "ago", "seconds_text", "safe_url", "endpoint_ref", "add_json"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)([smhdw]))+|\d+(?:\.\d+)?")
#: The longest duration taken (100 years): a longer one cannot name a time a clock can show.
_MAX_DURATION = 100 * 365 * 86400


def duration(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``7d``, ``1w``, ``1h30m``, or a plain number of seconds -> seconds.

    An argparse type: a bad one is a one-line usage error.
    """
    t = text.strip().lower()
    if not _DURATION.fullmatch(t):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 30m, 2h, 7d)")
    if t[-1].isdigit():
        seconds = float(t)
    else:
        seconds = float(sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhdw])", t)))
    if seconds > _MAX_DURATION:
        raise argparse.ArgumentTypeError(f"too long a duration: {text!r} (at most 100 years)")
    return seconds


def span(seconds: float) -> str:
    """A duration as typed: 604800 -> ``7d``, 7200 -> ``2h``, 90 -> ``90s`` (the largest unit that is whole)."""
    for unit in "wdhm":
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{seconds / _UNITS[unit]:g}{unit}"
    return f"{seconds:g}s"


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for a script instead of a table")


def open_part(target: str, part: str) -> Any:
    """The Outbox or Inbox in DB, after checking that it holds one (UsageError or Failure, one line)."""
    from ..backends import StorageError, is_url, open_backend

    if not is_url(target):
        _check_file(target, part)
    try:
        backend = open_backend(target)
    except ImportError as e:  # no PostgreSQL driver
        raise UsageError(str(e)) from None
    except (ValueError, StorageError) as e:
        raise UsageError(f"{target}: {e}") from None
    parts = _parts(backend, target)
    if part not in parts:
        where = backend.where
        if parts:
            raise UsageError(f"{where} holds no webhooklite {part} (it holds the {', '.join(sorted(parts))})")
        kind = "file" if not is_url(target) else "database"
        raise UsageError(f"{where} is not a webhooklite {part}: the {kind} has no webhooklite tables")
    try:
        if part == "outbox":
            from ..outbox import Outbox

            return Outbox(target)
        from ..inbox import Inbox

        return Inbox(target)
    except StorageError as e:
        raise Failure(str(e)) from None
    except ValueError as e:  # e.g. written by a newer webhooklite
        raise UsageError(str(e)) from None


def run_action(args: argparse.Namespace, part: str, actions: Any) -> int:
    """``outbox DB ACTION`` / ``inbox DB ACTION``: open the part, run the action, close it; what the
    library refuses (no such id, a disabled endpoint, the database gone) is one line and exit 1."""
    import sys

    from ..backends import StorageError
    from .output import Style

    opened = open_part(args.db, part)
    try:
        return int(actions[args.action](opened, args, Style.for_stream(sys.stdout)))
    except KeyError as e:  # no such delivery, endpoint or event
        raise Failure(str(e.args[0]) if e.args else "not found") from None
    except (ValueError, StorageError) as e:  # a retry to a disabled endpoint, the database unreachable
        raise Failure(str(e)) from None
    finally:
        opened.close()


def _check_file(path: str, part: str) -> None:
    if not os.path.exists(path):
        raise UsageError(f"no such {part} file: {path}")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a folder, not an {part} file")


def _parts(backend: Any, target: str) -> Any:
    """The parts in the database, read without writing anything (sqlite: a read-only connection)."""
    from ..backends import StorageError, is_url

    try:
        if is_url(target):
            conn = backend.connect()
        else:
            import sqlite3

            uri = "file:" + quote(os.path.abspath(target)) + "?mode=ro"
            try:
                conn = sqlite3.connect(uri, uri=True, timeout=10)
            except sqlite3.Error as e:
                raise Failure(f"{target}: cannot open the file ({e})") from None
        try:
            return backend.parts(conn)
        finally:
            backend.close(conn)
    except StorageError as e:
        if "not a database" in str(e):
            raise UsageError(f"{target} is not a sqlite database (nor a webhooklite file)") from None
        raise Failure(str(e)) from None


def endpoint_ref(text: str) -> Any:
    """An endpoint (or inbox event) as typed: its id (digits), else its URL (or message id)."""
    return int(text) if text.isdigit() else text


def ago(t: Optional[float], now: Optional[float] = None) -> str:
    """A past time for people: ``12s ago``, ``5m ago``, ``3h ago``, ``4d ago`` (``-`` for none)."""
    if t is None:
        return "-"
    s = max(0.0, (time.time() if now is None else now) - t)
    if s < 120:
        return f"{s:.0f}s ago"
    if s < 7200:
        return f"{s / 60:.0f}m ago"
    if s < 2 * 86400:
        return f"{s / 3600:.0f}h ago"
    return f"{s / 86400:.0f}d ago"


def seconds_text(s: Optional[float]) -> str:
    """A short duration for people: ``0.4ms``, ``12ms``, ``1.25s`` (``-`` for none)."""
    if s is None:
        return "-"
    if s < 0.01:
        return f"{s * 1000:.1f}ms"
    if s < 1:
        return f"{s * 1000:.0f}ms"
    return f"{s:.2f}s"


def safe_url(url: str) -> str:
    """A URL fit to print: a password in it (``https://user:pw@host/``) is shown as ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
