"""Saved deliveries: the file ``listen --save DIR`` writes and ``replay`` and ``verify`` read.

``listen --save DIR`` writes every delivery it gets to
``DIR/<UTC time>-<n>-<message id>.json``, readable by its owner only (0600,
in a folder made 0700 when ``listen`` creates it): it holds every header,
``Authorization`` too. The file is JSON meant to be read (and written) by
people::

    {
      "format": "webhooklite-delivery/1",
      "received_at": "2026-04-14T08:30:00.123Z",
      "method": "POST",
      "path": "/",
      "headers": {"content-type": "application/json", "webhook-id": "msg_...", ...},
      "body": "{\\"event\\":\\"payment.completed\\",\\"order_id\\":\\"ABC123\\"}",
      "answered": 200,
      "signature": "ok"
    }

``headers`` are the request's headers as received (names in lower case;
a repeated header's values joined with ``", "``). ``body`` is the raw body
exactly as received, as a JSON string, when it is UTF-8; otherwise the file
has ``body_base64`` (standard base64 of the raw bytes) instead. The body is
what was signed, so it is kept byte for byte, never re-formatted: change one
character and ``verify`` says the signature no longer matches. ``answered``
(the status ``listen`` answered) and ``signature`` (``"ok"``, ``"not
checked"`` or why it failed) are for reading only. ``received_at`` (UTC) is
the clock ``verify`` checks the signature's timestamp against. To write
one by hand, ``headers`` and ``body`` (or ``body_base64``) are enough.
"""
import base64
import binascii
import datetime
import errno
import json
import os
import re
from typing import Any, Dict, Mapping, Tuple

from ..headers import Headers
from .output import UsageError

__all__ = ["FORMAT", "record", "load", "make_folder", "save", "parse_iso"]

#: The ``format`` of a saved delivery file.
FORMAT = "webhooklite-delivery/1"


def _utc_now_iso() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> float:
    """An ISO 8601 time (``Z`` or an offset; none is UTC) as a Unix timestamp; ValueError if it is not one."""
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    when = datetime.datetime.fromisoformat(t)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def record(method: str, path: str, h: Mapping[str, str], body: bytes, status: int, signature: str) -> Dict[str, Any]:
    """The saved form of one delivery, received now."""
    rec: Dict[str, Any] = {
        "format": FORMAT,
        "received_at": _utc_now_iso(),
        "method": method,
        "path": path,
        "headers": dict(h.items()),
    }
    try:
        rec["body"] = body.decode("utf-8")
    except UnicodeDecodeError:
        rec["body_base64"] = base64.b64encode(body).decode("ascii")
    rec["answered"] = status
    rec["signature"] = signature
    return rec


def make_folder(path: str) -> None:
    """Make the folder for saved deliveries, 0700 if this call creates it (whatever the umask).

    The files hold every header, ``Authorization`` too, and the raw body. A
    folder that is already there is left as its owner made it.
    """
    try:
        os.makedirs(path, mode=0o700)
    except FileExistsError:
        if not os.path.isdir(path):
            raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a folder") from None
        return
    os.chmod(path, 0o700)  # makedirs' mode is filtered by the umask


def _create_private(name: str, text: str) -> None:
    """Write a new file readable by its owner only: 0600 whatever the umask; FileExistsError if it is there."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # the mode given to open() is filtered by the umask
        f = os.fdopen(fd, "w", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise
    with f:
        f.write(text)


def save(folder: str, rec: Mapping[str, Any], msg_id: str, seq: int) -> str:
    """Write ``rec`` to a new file (0600) in ``folder`` and return its name; OSError if it cannot."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", msg_id)[:64]  # the id comes from the network
    stamp = str(rec["received_at"])[:19].replace("-", "").replace(":", "")
    text = json.dumps(rec, indent=2, ensure_ascii=False) + "\n"
    for n in range(100):
        name = os.path.join(folder, f"{stamp}-{seq:04d}{'' if not n else f'.{n}'}-{safe}.json")
        try:
            _create_private(name, text)
            return name
        except FileExistsError:
            continue
    raise OSError("too many files with this name")


def load(path: str) -> Tuple[Headers, bytes, Dict[str, Any]]:
    """A saved delivery: its headers, raw body, and the whole record; a usage error if it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not a saved delivery (not UTF-8 text)") from None
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{path} is not a saved delivery: not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("headers"), dict):
        raise UsageError(f"{path} is not a saved delivery: it needs a \"headers\" object and a \"body\"")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in rec["headers"].items()):
        raise UsageError(f"{path}: \"headers\" must map names to strings")
    if isinstance(rec.get("body"), str):
        try:
            body = rec["body"].encode("utf-8")
        except UnicodeEncodeError:  # "\ud800": no UTF-8 body that was received holds one
            raise UsageError(f"{path}: \"body\" holds a lone surrogate escape; use \"body_base64\"") from None
    elif isinstance(rec.get("body_base64"), str):
        try:
            body = base64.b64decode(rec["body_base64"], validate=True)
        except (binascii.Error, ValueError):
            raise UsageError(f"{path}: \"body_base64\" is not valid base64") from None
    else:
        raise UsageError(f"{path} is not a saved delivery: it has no \"body\" (or \"body_base64\") string")
    return Headers(rec["headers"]), body, rec
