"""Ed25519 signatures (RFC 8032) in pure Python, for Standard Webhooks ``v1a``.

The standard library has no ed25519, so this module does it with
``hashlib.sha512`` and integer arithmetic. ``import webhooklite`` does not load
it; the signing layer imports it when a ``whsk_`` or ``whpk_`` key is used.

Raw keys and signatures (bytes)::

    seed = os.urandom(32)                       # the RFC 8032 private key
    pk = public_key(seed)                       # 32 bytes
    sig = sign(seed, message)                   # 64 bytes; SigningKey(seed).sign() for many
    verify(pk, message, sig)                    # True or False, never raises on bad input
    check_public_key(pk)                        # ValueError saying what is wrong

Standard Webhooks keys (str)::

    sk, pk = generate_keypair()                 # "whsk_...", "whpk_..."
    parse_secret_key(sk) -> 32-byte seed        parse_public_key(pk) -> 32-byte public key
    public_key_of(sk) -> "whpk_..."

Key format. The spec's table says the asymmetric signing secret is a
"Standard ed25519 key pair", serialized "base64 encoded, prefixed with
`whsk_` for the secret key, and `whpk_` for the public key". It does not say
which bytes of the secret key are encoded, and the implementations differ:
the open Python pull request (standard-webhooks #304, ``private_bytes_raw()``)
and the Go one (#253, ``ed25519.NewKeyFromSeed``) encode the 32-byte seed;
the JavaScript one (#308, ``@stablelib`` ``secretKey``) and Svix's server
(``ed25519-compact`` ``KeyPair``) encode the 64-byte seed followed by the
public key (the NaCl/libsodium layout). We write the 32-byte seed, as the
Python pull request does, and read both; a 64-byte key whose second half is
not the public key of its first half is refused, because signing with a
mismatched public key would leak the secret. A ``whpk_`` key is the 32-byte
RFC 8032 encoding of the public point. Base64 is the standard alphabet with
``=`` padding, as in the spec's examples; missing padding is tolerated, as
for ``whsec_`` secrets.

Verification (RFC 8032 section 5.1.7, with libsodium's extra checks, so that
webhooklite accepts exactly what PyNaCl/libsodium accepts): a public key or
signature of the wrong length, an S that is not below the group order L, a
public key whose y is not below p (non-canonical), that is not on the curve,
or that has small order (such a key lets anyone forge), and an R of small
order are all refused; then ``[S]B == R + [k]A`` is checked *cofactorless*,
by encoding ``[S]B - [k]A`` and comparing it with R's 32 bytes. A matching
encoding is canonical and on the curve, so this is the RFC's strict decoding
of R as well. RFC 8032 allows either equation; cofactored verification
(multiplying by 8) would accept a few crafted signatures whose R carries a
small-order component, which libsodium, Go and most deployed verifiers
refuse, and a receiver should not accept what the reference C library rejects.

Timing. Nothing here is constant-time: Python's big-integer arithmetic and
table lookups take time that depends on the values. Signing handles the
secret scalar and the secret nonce, so someone who can make a sender sign
many messages and measure each signing precisely (a process on the same
machine or VM, rather than over the network's jitter) could in principle
recover the sender's secret key. A sender where that threat is real should
sign with a constant-time library (PyNaCl) instead. Verification uses only
public data (the public key, the message and the signature), so its timing
gives nothing secret away; receivers are unaffected.

Speed. Points use extended twisted Edwards coordinates (RFC 8032 5.1.4).
Signing multiplies the base point with a table of its multiples in radix 16;
verification computes ``[S]B - [k]A`` in one chain of doublings (Straus, with
width-w NAF digits: a fixed table for B, one per public key for A, cached).
Both tables are built on first use.
"""

import base64
import binascii
import functools
import hashlib
import os
from typing import List, Optional, Tuple

from .signing import b64decode_key

__all__ = [
    "SigningKey",
    "check_public_key",
    "format_public_key",
    "format_secret_key",
    "generate_keypair",
    "parse_public_key",
    "parse_secret_key",
    "public_key",
    "public_key_of",
    "sign",
    "verify",
]

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # order of the base point
D = -121665 * pow(121666, P - 2, P) % P  # the curve: -x^2 + y^2 = 1 + d x^2 y^2
D2 = 2 * D % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
_Y_MASK = (1 << 255) - 1

# y of the points of order 1, 2, 4 and 8; a public key or an R with one of
# them is refused, as libsodium does (its ge25519_has_small_order blacklist).
_Y8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022
_SMALL_ORDER_Y = frozenset({0, 1, P - 1, _Y8, P - _Y8})

# A point in extended coordinates (X, Y, Z, T): x = X/Z, y = Y/Z, x*y = T/Z.
Point = Tuple[int, int, int, int]
# A point ready to be added: (Y+X, Y-X, 2*d*T, 2*Z).
Cached = Tuple[int, int, int, int]

_IDENTITY: Point = (0, 1, 1, 0)
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_BASE: Point = (_BX, _BY, 1, _BX * _BY % P)

_B_WIDTH = 8  # wNAF width for B in verify: 64 odd multiples, one addition per ~9 bits
_A_WIDTH = 5  # wNAF width for A: 8 odd multiples, one addition per ~6 bits


# -- points -------------------------------------------------------------------


def _cached(p: Point) -> Cached:
    x, y, z, t = p
    return ((y + x) % P, (y - x) % P, t * D2 % P, 2 * z % P)


def _neg(c: Cached) -> Cached:
    return (c[1], c[0], (P - c[2]) % P, c[3])


def _add(p: Point, q: Cached) -> Point:
    """p + q (RFC 8032 5.1.4, "add-2008-hwcd-3"), with q in cached form."""
    x1, y1, z1, t1 = p
    yx, ymx, t2d, z2 = q
    a = (y1 - x1) * ymx % P
    b = (y1 + x1) * yx % P
    c = t1 * t2d % P
    d = z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _double(p: Point) -> Point:
    """2p (RFC 8032 5.1.4, "dbl-2008-hwcd")."""
    x1, y1, z1, _ = p
    a = x1 * x1 % P
    b = y1 * y1 % P
    c = 2 * z1 * z1 % P
    s = x1 + y1
    h = a + b
    e = h - s * s % P
    g = a - b
    f = c + g
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _encode(p: Point) -> bytes:
    x, y, z, _ = p
    zi = pow(z, -1, P)
    x = x * zi % P
    y = y * zi % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _decode(s: bytes) -> Optional[Point]:
    """The point encoded in 32 bytes, or None (RFC 8032 5.1.3, strict: y < p)."""
    n = int.from_bytes(s, "little")
    sign, y = n >> 255, n & _Y_MASK
    if y >= P:
        return None
    u = (y * y - 1) % P  # x^2 = u / v
    v = (D * y * y + 1) % P
    v3 = v * v % P * v % P
    x = u * v3 % P * pow(u * v3 * v3 * v % P, (P - 5) // 8, P) % P
    vxx = v * x * x % P
    if vxx == (P - u) % P:
        x = x * SQRT_M1 % P
    elif vxx != u:
        return None  # not on the curve
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def _has_small_order(s: bytes) -> bool:
    return (int.from_bytes(s, "little") & _Y_MASK) % P in _SMALL_ORDER_Y


# -- scalar multiplication ----------------------------------------------------


@functools.lru_cache(maxsize=None)
def _base_windows() -> List[List[Cached]]:
    """j * 16^i * B for i < 64 and 1 <= j <= 8: built once, on first signing."""
    rows = []
    p = _BASE
    for _ in range(64):
        row = [_cached(p)]
        q = p
        for _ in range(7):
            q = _add(q, row[0])
            row.append(_cached(q))
        rows.append(row)
        p = _double(_double(_double(_double(p))))
    return rows


def _mul_base(n: int) -> Point:
    """[n]B, adding one table entry per signed radix-16 digit of n mod L."""
    n %= L
    q = _IDENTITY
    for row in _base_windows():
        d = n & 15
        n >>= 4
        if d > 8:  # digits in -7..8: the table holds 1..8, negation is free
            d -= 16
            n += 1
        if d > 0:
            q = _add(q, row[d - 1])
        elif d < 0:
            q = _add(q, _neg(row[-d - 1]))
    return q


def _wnaf(n: int, width: int) -> List[int]:
    """Width-w NAF of n, least significant first: odd digits |d| < 2^(w-1)."""
    digits = []
    full, half = 1 << width, 1 << (width - 1)
    while n:
        d = 0
        if n & 1:
            d = n & (full - 1)
            if d >= half:
                d -= full
            n -= d
        digits.append(d)
        n >>= 1
    return digits


def _odd_multiples(p: Point, width: int) -> List[Cached]:
    """A table indexed by a wNAF digit d (negative ones wrap): t[d] = [d]p."""
    table = [_cached(_IDENTITY)] * (1 << width)
    p2 = _cached(_double(p))
    q = p
    for d in range(1, 1 << (width - 1), 2):
        table[d] = _cached(q)
        table[-d] = _neg(table[d])
        q = _add(q, p2)
    return table


@functools.lru_cache(maxsize=None)
def _base_odd_multiples() -> List[Cached]:
    return _odd_multiples(_BASE, _B_WIDTH)


@functools.lru_cache(maxsize=128)
def _minus_a_table(pk: bytes) -> Optional[List[Cached]]:
    """The wNAF table of -A for a valid public key, else None. Receivers verify
    against a few keys, many times: caching it saves the decoding and table."""
    a = _decode(pk)
    if a is None or _has_small_order(pk):
        return None
    x, y, z, t = a
    return _odd_multiples(((P - x) % P, y, z, (P - t) % P), _A_WIDTH)


def _straus(s: int, k: int, minus_a: List[Cached]) -> Point:
    """[s]B + [k](-A), both scalars sharing one chain of doublings."""
    ds = _wnaf(s, _B_WIDTH)
    dk = _wnaf(k, _A_WIDTH)
    n = max(len(ds), len(dk))
    ds += [0] * (n - len(ds))
    dk += [0] * (n - len(dk))
    b = _base_odd_multiples()
    q = _IDENTITY
    for i in range(n - 1, -1, -1):
        q = _double(q)
        if dk[i]:
            q = _add(q, minus_a[dk[i]])
        if ds[i]:
            q = _add(q, b[ds[i]])
    return q


# -- Ed25519 ------------------------------------------------------------------


def _hash_int(*parts: bytes) -> int:
    h = hashlib.sha512()
    for part in parts:
        h.update(part)
    return int.from_bytes(h.digest(), "little")


class SigningKey:
    """An ed25519 secret key made from its 32-byte seed, expanded once so that
    each signature costs one base-point multiplication. Not constant-time:
    see the module docstring."""

    __slots__ = ("_a", "_prefix", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError(f"an ed25519 seed is 32 bytes, not {len(seed)}")
        digest = hashlib.sha512(seed).digest()
        a = int.from_bytes(digest[:32], "little")
        self._a = (a & ((1 << 254) - 8)) | (1 << 254)  # clamped (RFC 8032 5.1.5)
        self._prefix = digest[32:]
        #: The 32-byte public key.
        self.public_key: bytes = _encode(_mul_base(self._a))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte signature of message (RFC 8032 5.1.6)."""
        r = _hash_int(self._prefix, message) % L
        big_r = _encode(_mul_base(r))
        k = _hash_int(big_r, self.public_key, message) % L
        return big_r + ((r + k * self._a) % L).to_bytes(32, "little")

    def __repr__(self) -> str:
        return f"<SigningKey {format_public_key(self.public_key)}>"


def public_key(seed: bytes) -> bytes:
    """The 32-byte public key of a 32-byte seed."""
    return SigningKey(seed).public_key


def sign(seed: bytes, message: bytes) -> bytes:
    """The 64-byte signature of message by the key with this 32-byte seed."""
    return SigningKey(seed).sign(message)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether signature is a valid ed25519 signature of message by the key.

    Anything malformed (lengths, encodings, small-order points, S >= L) is
    False, never an exception; the module docstring lists the checks."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    minus_a = _minus_a_table(bytes(public_key))
    r = bytes(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if minus_a is None or s >= L or _has_small_order(r):
        return False
    k = _hash_int(r, public_key, message) % L
    return _encode(_straus(s, k, minus_a)) == r


def check_public_key(public_key: bytes) -> None:
    """Raise ValueError saying why these bytes are not a usable public key."""
    if len(public_key) != 32:
        raise ValueError(f"an ed25519 public key is 32 bytes, not {len(public_key)}")
    if int.from_bytes(public_key, "little") & _Y_MASK >= P:
        raise ValueError("the ed25519 public key is not canonical (its y is not below 2^255-19)")
    if _has_small_order(public_key):
        raise ValueError(
            "the ed25519 public key is a point of small order: anyone could forge "
            "signatures that it accepts"
        )
    if _decode(public_key) is None:
        raise ValueError("the ed25519 public key is not a point on the curve")


# -- Standard Webhooks keys: whsk_ / whpk_ ------------------------------------

SECRET_PREFIX = "whsk_"
PUBLIC_PREFIX = "whpk_"


def _unprefix(key: str, prefix: str) -> bytes:
    if not isinstance(key, str):
        raise TypeError(f"a Standard Webhooks key is a str starting with {prefix!r}")
    key = key.strip()
    if not key.startswith(prefix):
        if prefix == SECRET_PREFIX and key.startswith(PUBLIC_PREFIX):
            raise ValueError(
                "this is a 'whpk_' public key: it only verifies; signing needs the "
                "'whsk_' secret key"
            )
        if prefix == PUBLIC_PREFIX and key.startswith(SECRET_PREFIX):
            raise ValueError(
                "this is a 'whsk_' secret key, which stays with the sender: a receiver "
                "needs only its 'whpk_' public key (public_key_of() gives it)"
            )
        if key.startswith("whsec_"):
            raise ValueError(
                "a 'whsec_' secret is a symmetric (v1, HMAC) key, not an ed25519 key"
            )
        raise ValueError(f"a Standard Webhooks ed25519 key here starts with {prefix!r}")
    body = key[len(prefix):]
    try:
        return b64decode_key(body)
    except binascii.Error:
        raise ValueError(
            f"the {prefix!r} key is not valid base64 after the prefix: copy it whole"
        ) from None


def parse_secret_key(key: str) -> bytes:
    """The 32-byte seed in a ``whsk_`` key (of a 32-byte seed, or of the 64-byte
    seed + public key, whose halves must match); ValueError says what is wrong."""
    raw = _unprefix(key, SECRET_PREFIX)
    if len(raw) == 64:
        if public_key(raw[:32]) != raw[32:]:
            raise ValueError(
                "the 64-byte 'whsk_' key's second half is not the public key of its "
                "first half: the key is corrupt"
            )
        return raw[:32]
    if len(raw) != 32:
        raise ValueError(
            f"the 'whsk_' key decodes to {len(raw)} bytes; an ed25519 secret key is "
            "32 bytes (the seed) or 64 (the seed and the public key)"
        )
    return raw


def parse_public_key(key: str) -> bytes:
    """The 32-byte public key in a ``whpk_`` key; ValueError says what is wrong."""
    raw = _unprefix(key, PUBLIC_PREFIX)
    if len(raw) != 32:
        raise ValueError(
            f"the 'whpk_' key decodes to {len(raw)} bytes; an ed25519 public key is 32"
        )
    check_public_key(raw)
    return raw


def format_secret_key(seed: bytes) -> str:
    """``"whsk_"`` + base64 of the 32-byte seed."""
    if len(seed) != 32:
        raise ValueError(f"an ed25519 seed is 32 bytes, not {len(seed)}")
    return SECRET_PREFIX + base64.b64encode(seed).decode("ascii")


def format_public_key(public_key: bytes) -> str:
    """``"whpk_"`` + base64 of the 32-byte public key."""
    check_public_key(public_key)
    return PUBLIC_PREFIX + base64.b64encode(public_key).decode("ascii")


def public_key_of(secret_key: str) -> str:
    """The ``whpk_`` key that verifies what this ``whsk_`` key signs."""
    return format_public_key(public_key(parse_secret_key(secret_key)))


def generate_keypair() -> Tuple[str, str]:
    """A new random key pair: ``("whsk_...", "whpk_...")``."""
    seed = os.urandom(32)
    return format_secret_key(seed), format_public_key(public_key(seed))
