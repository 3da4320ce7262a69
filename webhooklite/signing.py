"""Secrets, signing and verification for each scheme (pure: no I/O).

Three schemes, by name:

``"standard"``
    Standard Webhooks (Svix): ``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{ts}.{body}")>``.
    Receiving also accepts the ``svix-*`` spelling of the same headers.
``"github"``
    ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``.
``"stripe"``
    ``Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>``.

A secret may be a list, newest first: signing emits a signature for each
(where the scheme's header holds one, the newest), verifying accepts any.
"""
from __future__ import annotations

import os
import time

from .errors import SignatureError, TimestampError
from .headers import Headers, parse_uint

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see webhooklite/__init__.py)
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

    from .events import Event

__all__ = [
    "SCHEMES",
    "DEFAULT_TOLERANCE",
    "Secret",
    "Signer",
    "generate_keypair",
    "generate_secret",
    "new_message_id",
    "sign",
    "verify",
]

#: The scheme names webhooklite speaks.
SCHEMES = ("standard", "github", "stripe")
#: Seconds a signature's timestamp may be off, past or future.
DEFAULT_TOLERANCE = 300

if TYPE_CHECKING:
    #: One secret, or a list of them (newest first) while keys rotate.
    Secret = Union[str, bytes, Sequence[Union[str, bytes]]]

_MIN_KEY, _MAX_KEY = 24, 64
#: Signatures looked at in one header (a rotation carries two or three).
_MAX_SIGNATURES = 10
#: The standard scheme's headers, (prefix, signature, id, timestamp): Standard Webhooks' names, or Svix's.
_WEBHOOK = ("webhook-", "webhook-signature", "webhook-id", "webhook-timestamp")
_SVIX = ("svix-", "svix-signature", "svix-id", "svix-timestamp")
#: ed25519 verifications one request may cost (signatures x public keys), at about 1 ms each.
_MAX_V1A_CHECKS = 4
#: Re-serialization is only guessed at for bodies up to this size (it is the error path).
_RESERIALIZE_PROBE_LIMIT = 256 * 1024
#: ... and at most once per this many seconds per Signer: anyone can send a bad signature, and
#: the guess costs about ten times a good request, so a flood of them must not pay for it.
_RESERIALIZE_PROBE_INTERVAL = 1.0
_OTHER_SCHEME_HEADERS = (
    ("webhook-signature", "standard"),
    ("svix-signature", "standard"),
    ("x-hub-signature-256", "github"),
    ("stripe-signature", "stripe"),
)


def new_message_id() -> str:
    """Return a new random message id, ``"msg_"`` + 22 URL-safe characters."""
    import base64

    return "msg_" + base64.urlsafe_b64encode(os.urandom(16)).decode("ascii").rstrip("=")


def generate_secret() -> str:
    """Return a new random secret, ``"whsec_"`` + base64 of 32 random bytes."""
    import base64

    return "whsec_" + base64.b64encode(os.urandom(32)).decode("ascii")


def b64decode_key(text: str) -> bytes:
    """A key's base64 text as bytes: standard alphabet, surrounding white space ignored, the
    padding optional (as people paste keys); anything else raises binascii.Error (a ValueError)."""
    import base64

    text = text.strip()
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def generate_keypair() -> Tuple[str, str]:
    """Return a new Standard Webhooks v1a (ed25519) key pair, ``("whsk_...", "whpk_...")``.

    The sender signs with the ``whsk_`` secret key (``Sender(url, sk)``);
    receivers verify with the ``whpk_`` public key (``Receiver(pk)``), which
    cannot sign: a receiver's leaked key forges nothing. Pure Python (RFC
    8032); see ``webhooklite.ed25519`` for what that means for timing.
    """
    from .ed25519 import generate_keypair as make

    return make()


def _key(secret: Union[str, bytes], scheme: str) -> bytes:
    if isinstance(secret, (bytes, bytearray, memoryview)):
        key = bytes(secret)
        if not key:
            raise ValueError("the secret is empty")
        return key
    if not isinstance(secret, str):
        raise TypeError(f"a secret is a str or bytes, not {type(secret).__name__}")
    if not secret:
        raise ValueError("the secret is empty")
    if scheme != "standard":
        return secret.encode("utf-8")  # GitHub and Stripe: the secret string, whole (Stripe's includes whsec_)
    # Standard Webhooks: base64 after an optional "whsec_", as the official standardwebhooks and
    # svix libraries read it, so the same secret string gives the same key everywhere.
    prefixed = secret.startswith("whsec_")
    try:
        key = b64decode_key(secret[len("whsec_"):] if prefixed else secret)
    except ValueError:  # binascii.Error is one
        hints = [h for h in _secret_hints([secret], scheme) if "no 'whsec_' prefix" not in h]
        raise ValueError(
            ("the 'whsec_' secret is not valid base64 after the prefix" if prefixed else
             "a Standard Webhooks secret is base64 (usually after 'whsec_'), and this one is not")
            + ": copy it whole, or make a new one with webhooklite.generate_secret()"
            + "".join(f"; {h}" for h in hints)
        ) from None
    if not key:
        raise ValueError("the secret decodes to no bytes")
    if prefixed and len(key) < _MIN_KEY:
        raise ValueError(
            f"the 'whsec_' secret decodes to {len(key)} bytes; Standard Webhooks keys are "
            f"{_MIN_KEY} to {_MAX_KEY} bytes (make one with webhooklite.generate_secret())"
        )
    return key


def _secret_list(secret: Secret) -> List[Union[str, bytes]]:
    if isinstance(secret, (str, bytes, bytearray, memoryview)):
        return [secret]  # type: ignore[list-item]
    items = list(secret)
    if not items:
        raise ValueError("the list of secrets is empty")
    return items


def _secret_hints(secrets: Sequence[Union[str, bytes]], scheme: str) -> List[str]:
    """Say what looks wrong about the secrets, without repeating them."""
    hints = []
    for s in secrets:
        if not isinstance(s, str):
            continue
        if s.startswith("v1,") or s.startswith("v1="):
            hints.append("a secret starts with 'v1': that is a signature, not the signing secret")
        elif s.startswith(("sk_", "rk_", "pk_")):
            hints.append(
                "a secret looks like a Stripe API key (sk_/rk_/pk_); the webhook signing "
                "secret starts with 'whsec_'"
            )
        elif s.startswith("sha256="):
            hints.append("a secret starts with 'sha256=': that is a signature, not the secret")
        elif scheme == "standard" and not s.startswith("whsec_"):
            hints.append(
                "a secret has no 'whsec_' prefix; it is read as base64, as the official libraries "
                "read it (Standard Webhooks/Svix secrets start with 'whsec_': copy it whole)"
            )
        elif scheme == "stripe" and not s.startswith("whsec_"):
            hints.append("a secret has no 'whsec_' prefix; Stripe signing secrets start with 'whsec_'")
        elif len(s) < 16:
            hints.append(f"a secret is only {len(s)} characters long")
        if s != s.strip():
            hints.append("a secret has white space at an end (copied with a newline?)")
    return hints


def _as_bytes(body: Union[bytes, bytearray, memoryview, str]) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    raise TypeError(
        f"the body to sign or verify is the raw request bytes, not {type(body).__name__}"
        " (a parsed body cannot be verified: pass request.body / request.get_data())"
    )


if TYPE_CHECKING:
    #: What a scheme's header parser finds: (timestamp text, signed id, signatures, expected(body)).
    #: And, for v1a (ed25519) signatures, a check of the body against them (None when there are none).
    _Parsed = Tuple[
        Optional[str], Optional[str], List[bytes], Callable[[bytes], List[bytes]], Optional[Callable[[bytes], bool]]
    ]


def _headers(body: Any, headers: Any) -> Headers:
    """``headers`` as Headers; a clear TypeError when body and headers were swapped."""
    if isinstance(headers, Headers):
        return headers
    if isinstance(headers, (bytes, bytearray, memoryview, str)):
        raise TypeError(
            "the body comes first, then the headers: verify(body, headers, secret) and "
            "signer.verify(body, headers), as in standardwebhooks' verify(payload, headers)"
        )
    if not hasattr(headers, "items") and not isinstance(headers, (list, tuple)):
        raise TypeError(f"headers are a mapping of names to values, not {type(headers).__name__}")
    return Headers(headers)


#: hmac, hashlib and binascii's encoder, imported with the first Signer (``import webhooklite`` stays light).
_crypto: Any = None


def _load_crypto() -> Any:
    global _crypto
    if _crypto is None:
        import binascii
        import hashlib
        import hmac

        _crypto = (hmac, hashlib, binascii.b2a_base64)
    return _crypto


def _keyed(key: bytes) -> Any:
    """An HMAC-SHA256 keyed once: each message then costs a copy (the key's pads are not redone).

    Where hmac.HMAC wraps OpenSSL's own HMAC object (3.10+), that object itself: the same copy,
    update and digest, without hmac.py's Python layer around each of them.
    """
    hmac, hashlib, _ = _load_crypto()
    mac = hmac.new(key, digestmod=hashlib.sha256)
    return getattr(mac, "_hmac", None) or mac


def _hmac(mac: Any, data: bytes) -> bytes:
    """HMAC-SHA256 of ``data`` with a key made ready by :func:`_keyed`."""
    m = mac.copy()
    m.update(data)
    digest: bytes = m.digest()
    return digest


def _b64(digest: bytes) -> bytes:
    b2a: Any = (_crypto or _load_crypto())[2]
    encoded: bytes = b2a(digest, newline=False)  # = base64.b64encode, minus a Python layer
    return encoded


class Signer:
    """Signs and verifies for one scheme with one secret (or a rotation list).

    The keys are derived once, when the Signer is built, so a bad secret fails
    there with a ValueError rather than on the first request.
    """

    __slots__ = ("scheme", "_keys", "_signing", "_public", "_hints", "_now", "_next_probe")

    def __init__(
        self,
        secret: Secret,
        scheme: str = "standard",
        *,
        now: Optional[Callable[[], float]] = None,
        signing: bool = False,
    ) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
        secrets = _secret_list(secret)
        #: The scheme name: "standard", "github" or "stripe".
        self.scheme: str = scheme
        keys: List[bytes] = []  # HMAC keys (v1), newest first
        order: List[Tuple[str, Any]] = []  # what sign() emits, in the list's order: ("v1", key) / ("v1a", SigningKey)
        public: List[bytes] = []  # ed25519 public keys (v1a), from whpk_ keys and whsk_ ones
        for s in secrets:
            if isinstance(s, str) and s.startswith(("whsk_", "whpk_")):
                if scheme != "standard":
                    raise ValueError(
                        "whsk_/whpk_ keys are Standard Webhooks v1a (ed25519) keys: use scheme='standard'"
                    )
                from . import ed25519  # pure-Python ed25519, loaded only for v1a keys

                if s.startswith("whpk_"):
                    if signing:
                        raise ValueError(
                            "a 'whpk_' public key only verifies; a sender signs with the 'whsk_' secret key "
                            "(webhooklite.generate_keypair() makes a pair)"
                        )
                    public.append(ed25519.parse_public_key(s))
                else:
                    signer = ed25519.SigningKey(ed25519.parse_secret_key(s))
                    order.append(("v1a", signer))
                    public.append(signer.public_key)
            else:
                key = _key(s, scheme)
                keys.append(key)
                order.append(("v1", _keyed(key)))
        self._keys: Tuple[Any, ...] = tuple(_keyed(k) for k in keys)  # keyed HMACs (v1), newest first
        self._signing: Tuple[Tuple[str, Any], ...] = tuple(order)
        self._public: Tuple[bytes, ...] = tuple(public)
        self._hints = _secret_hints([s for s in secrets if not (isinstance(s, str) and s.startswith("wh") and s[2:5] in ("sk_", "pk_"))], scheme)
        self._now = now or time.time
        self._next_probe = 0.0  # monotonic time from which the re-serialization guess may run again

    def __repr__(self) -> str:
        return f"Signer(scheme={self.scheme!r}, keys={len(self._keys) + len(self._public)})"

    # -- signing -------------------------------------------------------------

    def sign(self, body: bytes, msg_id: str, timestamp: Optional[int] = None) -> Dict[str, str]:
        """Return the signature headers for ``body``.

        ``standard`` returns ``webhook-id``, ``webhook-timestamp`` and
        ``webhook-signature``; ``github`` returns ``X-Hub-Signature-256``;
        ``stripe`` returns ``Stripe-Signature``. ``timestamp`` is Unix
        seconds (default: now); a negative one is a ValueError, since no
        verifier would accept what it signs.
        """
        body = _as_bytes(body)
        ts = int(self._now()) if timestamp is None else int(timestamp)
        if ts < 0:
            raise ValueError(f"the timestamp is Unix seconds, 0 or more, not {ts}")
        if self.scheme == "standard":
            if not self._signing:
                raise ValueError("'whpk_' public keys only verify: signing needs a whsec_ or whsk_ key")
            signed = f"{msg_id}.{ts}.".encode("utf-8") + body
            sigs = " ".join(
                ("v1," + _b64(_hmac(k, signed)).decode("ascii")) if kind == "v1" else
                ("v1a," + _b64(k.sign(signed)).decode("ascii"))
                for kind, k in self._signing
            )
            return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sigs}
        if self.scheme == "github":
            return {"X-Hub-Signature-256": "sha256=" + _hmac(self._keys[0], body).hex()}
        signed = f"{ts}.".encode("ascii") + body
        v1 = ",".join("v1=" + _hmac(k, signed).hex() for k in self._keys)
        return {"Stripe-Signature": f"t={ts},{v1}"}

    # -- verifying -----------------------------------------------------------

    def verify(
        self,
        body: Union[bytes, str],
        headers: Union[Headers, Mapping[str, str]],
        *,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> "Event":
        """Check ``body`` (the raw bytes) against the signature in ``headers``; return the Event.

        The returned :class:`~webhooklite.Event` has the type, the id a
        receiver dedupes on, the signed timestamp (None for github) and the
        parsed body. Raises SignatureError, TimestampError when the signature
        is right but the timestamp is outside ``tolerance`` seconds, or
        PayloadError when the signed body is not JSON.
        """
        from .events import decode_body, event_from

        h = _headers(body, headers)
        ts, signed_id = self.check(body, h, tolerance=tolerance)
        raw = _as_bytes(body)
        return event_from(self.scheme, h, raw, decode_body(raw, h.get("content-type")), ts, signed_id, signed=True)

    def check(
        self,
        body: Union[bytes, str],
        headers: Union[Headers, Mapping[str, str]],
        *,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> Tuple[Optional[int], Optional[str]]:
        """The signature check alone (no parsing): return ``(timestamp, signed_id)``.

        ``timestamp`` is the signed Unix time (None for github, which signs
        none). ``signed_id`` is the standard scheme's ``webhook-id``/``svix-id``
        (whichever was verified); the github and stripe schemes sign no id,
        so it is None for them. Raises like :meth:`verify`.
        """
        h = headers if isinstance(headers, Headers) else _headers(body, headers)
        body = _as_bytes(body)
        if self.scheme == "standard":
            ts_text, msg_id, candidates, expected, v1a = self._parse_standard(h)
        elif self.scheme == "github":
            ts_text, msg_id, candidates, expected, v1a = self._parse_github(h)
        else:
            ts_text, msg_id, candidates, expected, v1a = self._parse_stripe(h)
        if not (_matches(expected(body), candidates) or (v1a is not None and v1a(body))):
            raise self._mismatch(body, candidates, expected)
        if ts_text is None:
            return None, msg_id
        ts = int(ts_text)
        skew = ts - self._now()
        if abs(skew) > tolerance:
            way, clock = ("past", "behind") if skew < 0 else ("future", "ahead of")
            n = int(abs(skew))
            raise TimestampError(
                f"the signature is valid but its timestamp is {n} seconds in the {way} "
                f"(tolerance {tolerance:g} s): the sender's clock is {clock} this machine's"
                + (", or this is an old request replayed" if skew < 0 else ""),
                f"timestamp is {n} seconds in the {way}, outside the {tolerance:g} s tolerance",
                skew=skew,
            )
        return ts, msg_id

    def _missing(self, name: str, h: Headers) -> SignatureError:
        extra = ""
        for header, scheme in _OTHER_SCHEME_HEADERS:
            if scheme != self.scheme and header in h:
                extra = (
                    f"; the request carries {header}, which is the {scheme!r} scheme: "
                    f"build the receiver with scheme={scheme!r}"
                )
                break
        return SignatureError(f"missing {name} header{extra}", f"missing {name} header")

    def _parse_standard(self, h: Headers) -> _Parsed:
        d = h._d  # lower-case names: plain dict lookups (one request's hot path)
        names = _SVIX if "webhook-signature" not in d and "svix-signature" in d else _WEBHOOK
        prefix = names[0]
        found = sig, msg_id, ts_text = d.get(names[1]), d.get(names[2]), d.get(names[3])
        if not (sig and msg_id and ts_text):
            raise self._missing(next(n for n, v in zip(names[1:], found) if not v), h)
        ts_text = ts_text.strip()
        if parse_uint(ts_text) is None:
            raise SignatureError(
                f"{prefix}timestamp is not a Unix time in whole seconds: {ts_text[:40]!r}",
                f"{prefix}timestamp is not a Unix time in seconds",
            )
        candidates: List[bytes] = []
        ed_sigs: List[bytes] = []
        # A header sent on two lines arrives joined with ", " (RFC 9110 §5.3): a base64 signature
        # holds no comma, so a trailing one is that join, not part of the signature.
        for part in sig.split():
            version, _, value = part.rstrip(",").partition(",")
            if version == "v1" and value:
                candidates.append(value.encode("utf-8", "replace"))
            elif version == "v1a" and value and self._public and len(ed_sigs) < _MAX_SIGNATURES:
                import base64

                try:
                    raw = base64.b64decode(value, validate=True)
                except ValueError:  # binascii.Error is one
                    continue
                if len(raw) == 64:
                    ed_sigs.append(raw)
        if not self._keys and not ed_sigs:
            raise SignatureError(
                f"{prefix}signature has no 'v1a,<base64>' ed25519 signature, and this receiver's keys are "
                f"whpk_ public keys, which verify only those: {sig[:60]!r}",
                f"{prefix}signature has no v1a signature",
            )
        if not candidates and not ed_sigs:
            raise SignatureError(
                f"{prefix}signature has no 'v1,<base64>' entry: {sig[:60]!r}",
                f"{prefix}signature has no v1 signature",
            )
        keys, public, head = self._keys, self._public, f"{msg_id}.{ts_text}.".encode("utf-8", "replace")

        def expected(body: bytes) -> List[bytes]:
            signed = head + body
            return [_b64(_hmac(k, signed)) for k in keys]

        def v1a(body: bytes) -> bool:
            from . import ed25519

            # Each check costs about a millisecond of pure Python: an unsigned caller listing
            # many signatures buys at most _MAX_V1A_CHECKS of them.
            signed, n = head + body, 0
            for signature in ed_sigs:
                for pk in public:
                    if n >= _MAX_V1A_CHECKS:
                        return False
                    n += 1
                    if ed25519.verify(pk, signed, signature):
                        return True
            return False

        return ts_text, msg_id, candidates, expected, (v1a if ed_sigs else None)

    def _parse_github(self, h: Headers) -> _Parsed:
        sig = h.get("x-hub-signature-256")
        if not sig:
            if "x-hub-signature" in h:
                raise SignatureError(
                    "missing X-Hub-Signature-256 header: only the SHA-1 X-Hub-Signature is "
                    "present, which webhooklite does not accept (GitHub sends both)",
                    "missing X-Hub-Signature-256 header",
                )
            raise self._missing("X-Hub-Signature-256", h)
        algo, _, value = sig.strip().partition("=")
        if algo != "sha256" or not value:
            raise SignatureError(
                f"X-Hub-Signature-256 is not 'sha256=<hex>': {sig[:80]!r}",
                "X-Hub-Signature-256 is not 'sha256=<hex>'",
            )
        keys = self._keys

        def expected(body: bytes) -> List[bytes]:
            return [_hmac(k, body).hex().encode() for k in keys]

        return None, None, [value.lower().encode("utf-8", "replace")], expected, None

    def _parse_stripe(self, h: Headers) -> _Parsed:
        sig = h.get("stripe-signature")
        if not sig:
            raise self._missing("Stripe-Signature", h)
        ts_text, candidates = None, []
        for item in sig.split(","):
            name, _, value = item.strip().partition("=")
            if name == "t":
                ts_text = value
            elif name == "v1" and value:
                candidates.append(value.lower().encode("utf-8", "replace"))
        if ts_text is None or parse_uint(ts_text) is None:
            raise SignatureError(
                f"Stripe-Signature has no 't=<unix seconds>': {sig[:80]!r}",
                "Stripe-Signature has no timestamp",
            )
        if not candidates:
            raise SignatureError(
                f"Stripe-Signature has no 'v1=' signature: {sig[:80]!r}",
                "Stripe-Signature has no v1 signature",
            )
        keys, head = self._keys, f"{ts_text}.".encode("ascii")

        def expected(body: bytes) -> List[bytes]:
            signed = head + body
            return [_hmac(k, signed).hex().encode() for k in keys]

        return ts_text, None, candidates, expected, None

    def _mismatch(self, body: bytes, candidates: List[bytes], expected: Callable[[bytes], List[bytes]]) -> SignatureError:
        public = "signature does not match"
        reencoded = None
        now = time.monotonic()
        if now >= self._next_probe:
            self._next_probe = now + _RESERIALIZE_PROBE_INTERVAL
            reencoded = _reserialized_match(body, candidates, expected)
        if reencoded:
            return SignatureError(
                "signature does not match this body, but it matches the same JSON encoded "
                f"{reencoded}: the body was parsed and re-serialized before verifying. "
                "Verify the raw request bytes (request.body / request.get_data()), "
                "not json.dumps(parsed)",
                public,
            )
        hints = "; ".join(self._hints)
        return SignatureError(
            f"signature does not match: the secret differs from the sender's, or the body "
            f"was changed on the way (verify the raw request bytes)"
            + (f"; {hints}" if hints else ""),
            public,
        )


def _matches(expected: List[bytes], candidates: List[bytes]) -> bool:
    """Whether any received signature is one we expect (constant-time compares).

    The HMACs are computed once per key, not once per candidate, and only the
    first few candidates count: a header with thousands of signatures must not
    buy an unauthenticated caller thousands of HMACs over a large body.
    """
    compare = (_crypto or _load_crypto())[0].compare_digest
    for c in candidates[:_MAX_SIGNATURES]:
        for e in expected:
            if compare(e, c):
                return True
    return False


def _reserialized_match(
    body: bytes, candidates: List[bytes], expected: Callable[[bytes], List[bytes]]
) -> Optional[str]:
    """Name the JSON encoding the signature matches, if the body is JSON re-encoded."""
    if len(body) > _RESERIALIZE_PROBE_LIMIT:
        return None
    try:
        import json

        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    variants: Tuple[Tuple[str, Dict[str, Any]], ...] = (
        ("compactly (no spaces)", {"separators": (",", ":"), "ensure_ascii": False}),
        ("with json.dumps's default spacing", {}),
        ("compactly with non-ASCII unescaped", {"separators": (",", ":"), "ensure_ascii": True}),
        ("with default spacing and non-ASCII unescaped", {"ensure_ascii": False}),
        ("compactly with sorted keys", {"separators": (",", ":"), "sort_keys": True}),
        ("with sorted keys", {"sort_keys": True}),
        ("indented", {"indent": 2}),
    )
    for name, kwargs in variants:
        try:
            other = json.dumps(value, **kwargs).encode("utf-8")
        except (ValueError, RecursionError):
            return None
        if other != body and _matches(expected(other), candidates):
            return name
    return None


def sign(
    body: Union[bytes, str],
    secret: Secret,
    *,
    scheme: str = "standard",
    msg_id: Optional[str] = None,
    timestamp: Optional[int] = None,
) -> Dict[str, str]:
    """Return the signature headers for ``body`` (see :meth:`Signer.sign`).

    ``msg_id`` goes into the standard scheme's signed content; a new one is
    made when it is not given.
    """
    return Signer(secret, scheme).sign(_as_bytes(body), msg_id or new_message_id(), timestamp)


def verify(
    body: Union[bytes, str],
    headers: Union[Headers, Mapping[str, str]],
    secret: Secret,
    *,
    scheme: str = "standard",
    tolerance: float = DEFAULT_TOLERANCE,
    now: Optional[Callable[[], float]] = None,
) -> "Event":
    """Verify a request's raw ``body`` against its ``headers``; return the verified Event.

    The body comes first, as in standardwebhooks' ``verify(payload, headers)``.
    See :meth:`Signer.verify`.
    """
    return Signer(secret, scheme, now=now).verify(body, headers, tolerance=tolerance)
