"""A conformance check for webhook receivers: the deliveries a careful receiver must refuse.

``python -m webhooklite check URL --secret S [--scheme ...]`` sends a receiver one
valid delivery, then the ones a careful receiver refuses (a bad signature, a stale and
a future timestamp, a body changed by one byte, an unknown signature version beside no
valid one, each signature header missing) and the ones it must accept (a redelivery of
the same message id, a valid signature among several), and reports what was answered
against what should have been.

The probes are built here, purely (:func:`probes`); :func:`run` sends them through any
``post(headers, body) -> (status, body)`` callable, so the command line sends them
with the Sender and tests can drive a receiver in-process. "Refused" is any 4xx but
404, 405 and 413 (those mean the probe never reached the signature check: a wrong URL,
a receiver that wants another method, or a body limit), since receivers differ on 400,
401 and 403; "accepted" is any 2xx.
"""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .signing import Signer, new_message_id

if TYPE_CHECKING:
    from .signing import Secret

__all__ = ["Probe", "Result", "probes", "run", "ACCEPT", "REFUSE"]

#: What a probe expects: a 2xx answer, or a refusal (a 4xx other than 404/405/413).
ACCEPT, REFUSE = "accepted", "refused"
#: Seconds a stale or future probe's timestamp is off: well past any tolerance in use (Svix: 5 min).
_SKEW = 3600

Post = Callable[[Dict[str, str], bytes], Tuple[Optional[int], bytes]]


class Probe:
    """One delivery to send: its name, what a careful receiver answers, and why."""

    __slots__ = ("name", "expect", "why", "headers", "body", "after")

    def __init__(self, name: str, expect: str, why: str, headers: Dict[str, str], body: bytes,
                 after: Optional[str] = None) -> None:
        #: A short name, e.g. "stale timestamp".
        self.name = name
        #: ACCEPT or REFUSE.
        self.expect = expect
        #: Why a careful receiver answers so.
        self.why = why
        #: The request headers.
        self.headers = headers
        #: The request body.
        self.body = body
        #: The name of a probe that must be accepted first (a redelivery follows its original).
        self.after = after


class Result:
    """What one probe got: the status (None when no answer came), and whether that was right."""

    __slots__ = ("probe", "status", "body", "ok", "error")

    def __init__(self, probe: Probe, status: Optional[int], body: bytes, error: Optional[str] = None) -> None:
        self.probe = probe
        self.status = status
        self.body = body
        self.error = error
        #: True when the answer is what a careful receiver gives.
        self.ok = _judge(probe.expect, status)

    @property
    def got(self) -> str:
        """The answer in words: "200", "401", or "no answer: ..."."""
        return str(self.status) if self.status is not None else f"no answer: {self.error or 'connection failed'}"

    def as_dict(self) -> Dict[str, Any]:
        return {"probe": self.probe.name, "expected": self.probe.expect, "status": self.status,
                "ok": self.ok, "why": self.probe.why, "error": self.error}


def _judge(expect: str, status: Optional[int]) -> bool:
    if status is None:
        return False
    if expect == ACCEPT:
        return 200 <= status < 300
    return 400 <= status < 500 and status not in (404, 405, 413)


def _flip(text: str) -> str:
    """The same signature text with one character changed, still well-formed, and different whatever
    the case: a digit for a digit or a letter ("A" and "a" are one hex digit to a case-blind receiver)."""
    i = len(text) // 2
    c = text[i]
    new = ("1" if c == "0" else "0") if c.isdigit() or c.lower() in "abcdef" else ("B" if c.upper() == "A" else "A")
    if new.lower() == c.lower():
        new = "2"
    return text[:i] + new + text[i + 1:]


def probes(
    secret: Secret,
    scheme: str = "standard",
    *,
    event: str = "webhooklite.check",
    data: Optional[Mapping[str, Any]] = None,
    now: Optional[float] = None,
) -> List[Probe]:
    """The probes for a receiver of ``scheme`` that knows ``secret``, in the order to send them.

    Every probe but the redelivery carries a fresh message id (and, where the scheme
    puts one in the body, a fresh body id), so a receiver's dedupe never hides a
    missing check.
    """
    signer = Signer(secret, scheme)
    ts = int(time.time() if now is None else now)
    out: List[Probe] = []

    def body_for(name: str, msg_id: str) -> bytes:
        fields: Dict[str, Any] = {"event": event, "id": msg_id, "probe": name}
        fields.update(data or {})
        return json.dumps(fields, separators=(",", ":")).encode("utf-8")

    def request(name: str, msg_id: Optional[str] = None, at: Optional[int] = None) -> Tuple[Dict[str, str], bytes, str]:
        msg_id = msg_id or new_message_id()
        body = body_for(name, msg_id)
        headers = {"Content-Type": "application/json", "User-Agent": "webhooklite-check"}
        headers.update(signer.sign(body, msg_id, ts if at is None else at))
        if scheme == "github":
            headers["X-GitHub-Event"] = event
            headers["X-GitHub-Delivery"] = msg_id
        elif scheme == "stripe":
            headers["webhook-id"] = msg_id
        return headers, body, msg_id

    def add(name: str, expect: str, why: str, headers: Dict[str, str], body: bytes, after: Optional[str] = None) -> None:
        out.append(Probe(name, expect, why, headers, body, after))

    headers, body, first_id = request("valid")
    add("valid delivery", ACCEPT, "signed with the secret, timestamp now", headers, body)
    # A redelivery: the same message id, signed again with a fresh timestamp, as a sender's retry is.
    again_body = body_for("valid", first_id)
    again = dict(headers)
    again.update(signer.sign(again_body, first_id, ts))
    add("redelivery of the same id", ACCEPT, "a retry after a success must be answered 2xx (and not handled twice)",
        again, again_body, after="valid delivery")

    sig_header = {"standard": "webhook-signature", "github": "X-Hub-Signature-256", "stripe": "Stripe-Signature"}[scheme]
    h, b, _ = request("bad signature")
    h[sig_header] = _flip(h[sig_header])
    add("bad signature", REFUSE, "one character of the signature changed", h, b)

    h, b, _ = request("body changed")
    i = b.index(b'"probe":"') + len(b'"probe":"')
    b = b[:i] + bytes([b[i] ^ 0x20]) + b[i + 1:]  # one byte, case flipped: still valid JSON
    add("body changed by one byte", REFUSE, "the signature covers every byte of the body", h, b)

    if scheme != "github":  # GitHub signs no time
        h, b, _ = request("stale", at=ts - _SKEW)
        add("stale timestamp", REFUSE, f"signed {_SKEW} s ago: a replay outside any tolerance", h, b)
        h, b, _ = request("future", at=ts + _SKEW)
        add("future timestamp", REFUSE, f"signed {_SKEW} s in the future", h, b)

    h, b, _ = request("unknown version")
    if scheme == "standard":
        h["webhook-signature"] = "v2," + h["webhook-signature"].split(",", 1)[1]
    elif scheme == "stripe":
        h["Stripe-Signature"] = h["Stripe-Signature"].replace("v1=", "v0=")
    else:
        h["X-Hub-Signature-256"] = h["X-Hub-Signature-256"].replace("sha256=", "sha1=")
    add("unknown signature version only", REFUSE, "no signature of a version the scheme defines", h, b)

    names: Sequence[str] = {
        "standard": ("webhook-signature", "webhook-timestamp", "webhook-id"),
        "github": ("X-Hub-Signature-256",),
        "stripe": ("Stripe-Signature",),
    }[scheme]
    for name in names:
        h, b, _ = request(f"missing {name}")
        del h[name]
        add(f"missing {name}", REFUSE, "a signature header is missing", h, b)

    if scheme in ("standard", "stripe"):
        h, b, _ = request("among several")
        if scheme == "standard":
            valid = h["webhook-signature"]
            h["webhook-signature"] = f"v1,{_flip(valid[3:])} {valid} v1a,{'A' * 86}=="
        else:
            t, v1 = h["Stripe-Signature"].split(",", 1)
            h["Stripe-Signature"] = f"{t},v1={_flip(v1[3:])},{v1}"
        add("valid signature among several", ACCEPT, "key rotation: any listed signature that matches counts", h, b)
    return out


def run(items: Sequence[Probe], post: Post) -> List[Result]:
    """Send each probe with ``post(headers, body) -> (status or None, body)``; return the results in order."""
    results: List[Result] = []
    passed: Dict[str, bool] = {}
    for probe in items:
        if probe.after is not None and not passed.get(probe.after):
            results.append(Result(probe, None, b"", f"not sent: {probe.after!r} was not accepted"))
            continue
        try:
            status, body = post(dict(probe.headers), probe.body)
            result = Result(probe, status, body)
        except Exception as exc:  # a transport error is an answer too: "no answer"
            result = Result(probe, None, b"", f"{type(exc).__name__}: {exc}")
        passed[probe.name] = result.ok
        results.append(result)
    return results
