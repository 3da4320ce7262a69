"""Pure-Python ed25519 (webhooklite.ed25519) for Standard Webhooks v1a (issue 17).

RFC 8032 section 7.1's vectors; every malformed input refused; interop both ways
with PyNaCl (libsodium), which is test-only and skipped with a reason when absent;
the whsk_/whpk_ key formats of the spec and of the implementations that exist.
"""
import base64
import os
import random
import subprocess
import sys

import pytest

from webhooklite import ed25519
from webhooklite.ed25519 import (
    L,
    P,
    SigningKey,
    check_public_key,
    format_public_key,
    format_secret_key,
    generate_keypair,
    parse_public_key,
    parse_secret_key,
    public_key,
    public_key_of,
    sign,
    verify,
)

try:
    import nacl.bindings
    import nacl.exceptions
    import nacl.signing
except ImportError:  # test-only dependency
    nacl = None

needs_nacl = pytest.mark.skipif(
    nacl is None, reason="PyNaCl is not installed (pip install pynacl): the libsodium interop tests need it"
)


def unhex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# RFC 8032 section 7.1, copied from the RFC text (hex lines as printed there).
RFC8032_VECTORS = {
    "TEST 1": (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        """e5564300c360ac729086e2cc806e828a
           84877f1eb8e5d974d873e06522490155
           5fb8821590a33bacc61e39701cf9b46b
           d25bf5f0595bbe24655141438e7a100b""",
    ),
    "TEST 2": (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        """92a009a9f0d4cab8720e820b5f642540
           a2b27b5416503f8fb3762223ebdb69da
           085ac1e43e15996e458f3613d0f11d8c
           387b2eaeb4302aeeb00d291612bb0c00""",
    ),
    "TEST 3": (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        """6291d657deec24024827e69c3abe01a3
           0ce548a284743a445e3680d7db5ac3ac
           18ff9b538d16f290ae67f760984dc659
           4a7c15e9716ed28dc027beceea1ec40a""",
    ),
    "TEST 1024": (
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        """08b8b2b733424243760fe426a4b54908 632110a66c2f6591eabd3345e3e4eb98
           fa6e264bf09efe12ee50f8f54e9f77b1 e355f6c50544e23fb1433ddf73be84d8
           79de7c0046dc4996d9e773f4bc9efe57 38829adb26c81b37c93a1b270b20329d
           658675fc6ea534e0810a4432826bf58c 941efb65d57a338bbd2e26640f89ffbc
           1a858efcb8550ee3a5e1998bd177e93a 7363c344fe6b199ee5d02e82d522c4fe
           ba15452f80288a821a579116ec6dad2b 3b310da903401aa62100ab5d1a36553e
           06203b33890cc9b832f79ef80560ccb9 a39ce767967ed628c6ad573cb116dbef
           efd75499da96bd68a8a97b928a8bbc10 3b6621fcde2beca1231d206be6cd9ec7
           aff6f6c94fcd7204ed3455c68c83f4a4 1da4af2b74ef5c53f1d8ac70bdcb7ed1
           85ce81bd84359d44254d95629e9855a9 4a7c1958d1f8ada5d0532ed8a5aa3fb2
           d17ba70eb6248e594e1a2297acbbb39d 502f1a8c6eb6f1ce22b3de1a1f40cc24
           554119a831a9aad6079cad88425de6bd e1a9187ebb6092cf67bf2b13fd65f270
           88d78b7e883c8759d2c4f5c65adb7553 878ad575f9fad878e80a0c9ba63bcbcc
           2732e69485bbc9c90bfbd62481d9089b eccf80cfe2df16a2cf65bd92dd597b07
           07e0917af48bbb75fed413d238f5555a 7a569d80c3414a8d0859dc65a46128ba
           b27af87a71314f318c782b23ebfe808b 82b0ce26401d2e22f04d83d1255dc51a
           ddd3b75a2b1ae0784504df543af8969b e3ea7082ff7fc9888c144da2af58429e
           c96031dbcad3dad9af0dcbaaaf268cb8 fcffead94f3c7ca495e056a9b47acdb7
           51fb73e666c6c655ade8297297d07ad1 ba5e43f1bca32301651339e22904cc8c
           42f58c30c04aafdb038dda0847dd988d cda6f3bfd15c4b4c4525004aa06eeff8
           ca61783aacec57fb3d1f92b0fe2fd1a8 5f6724517b65e614ad6808d6f6ee34df
           f7310fdc82aebfd904b01e1dc54b2927 094b2db68d6f903b68401adebf5a7e08
           d78ff4ef5d63653a65040cf9bfd4aca7 984a74d37145986780fc0b16ac451649
           de6188a7dbdf191f64b5fc5e2ab47b57 f7f7276cd419c17a3ca8e1b939ae49e4
           88acba6b965610b5480109c8b17b80e1 b7b750dfc7598d5d5011fd2dcc5600a3
           2ef5b52a1ecc820e308aa342721aac09 43bf6686b64b2579376504ccc493d97e
           6aed3fb0f9cd71a43dd497f01f17c0e2 cb3797aa2a2f256656168e6c496afc5f
           b93246f6b1116398a346f1a641f3b041 e989f7914f90cc2c7fff357876e506b5
           0d334ba77c225bc307ba537152f3f161 0e4eafe595f6d9d90d11faa933a15ef1
           369546868a7f3a45a96768d40fd9d034 12c091c6315cf4fde7cb68606937380d
           b2eaaa707b4c4185c32eddcdd306705e 4dc1ffc872eeee475a64dfac86aba41c
           0618983f8741c5ef68d3a101e8a3b8ca c60c905c15fc910840b94c00a0b9d0""",
        """0aab4c900501b3e24d7cdf4663326a3a
           87df5e4843b2cbdb67cbf6e460fec350
           aa5371b1508f9f4528ecea23c436d94b
           5e8fcd4f681e30a6ac00a9704a188a03""",
    ),
    "TEST SHA(abc)": (
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        """ddaf35a193617abacc417349ae204131
           12e6fa4e89a97ea20a9eeee64b55d39a
           2192992a274fc1a836ba3c23a3feebbd
           454d4423643ce80e2a9ac94fa54ca49f""",
        """dc2a4459e7369633a52b1bf277839a00
           201009a3efbf3ecb69bea2186c26b589
           09351fc9ac90b3ecfdfbc7c66431e030
           3dca179c138ac17ad9bef1177331a704""",
    ),
}


@pytest.mark.parametrize("name", list(RFC8032_VECTORS))
def test_rfc8032_section_7_1_vectors(name):
    seed, pk, msg, sig = (unhex(x) for x in RFC8032_VECTORS[name])
    if name == "TEST 1024":
        assert len(msg) == 1023  # the RFC's label: a dropped hex line would show here
    if name == "TEST SHA(abc)":
        import hashlib
        assert msg == hashlib.sha512(b"abc").digest()
    assert public_key(seed) == pk
    assert sign(seed, msg) == sig
    assert SigningKey(seed).sign(msg) == sig
    assert verify(pk, msg, sig)
    assert not verify(pk, msg + b"\0", sig)


# -- malformed inputs: each check of RFC 8032 5.1.7 (and libsodium's) refuses ----

SEED, PK, MSG, SIG = (unhex(x) for x in RFC8032_VECTORS["TEST 3"])


def y_encoding(y: int, sign_bit: int = 0) -> bytes:
    return (y | sign_bit << 255).to_bytes(32, "little")


def small_order_encodings():
    """Every encoding of a point of order 1, 2, 4 or 8, canonical or not."""
    ys = [0, 1, P - 1, ed25519._Y8, P - ed25519._Y8, P, P + 1]  # P, P+1: y = 0, 1 again
    return [y_encoding(y, s) for y in ys for s in (0, 1)]


def test_the_small_order_list_is_the_eight_torsion_points():
    t8 = ed25519._decode(y_encoding(ed25519._Y8))
    multiples, q = [], ed25519._IDENTITY
    for _ in range(8):
        multiples.append(ed25519._encode(q))
        q = ed25519._add(q, ed25519._cached(t8))
    assert ed25519._encode(q) == ed25519._encode(ed25519._IDENTITY)  # order 8 ...
    assert len(set(multiples)) == 8  # ... exactly
    ys = {int.from_bytes(m, "little") & ((1 << 255) - 1) for m in multiples}
    assert ys == set(ed25519._SMALL_ORDER_Y)


@pytest.mark.parametrize("pk_len,sig_len", [(31, 64), (33, 64), (0, 64), (32, 63), (32, 65), (32, 0)])
def test_wrong_lengths_are_refused(pk_len, sig_len):
    pk = (PK * 2)[:pk_len]
    sig = (SIG * 2)[:sig_len]
    assert verify(pk, MSG, sig) is False


def test_s_not_below_l_is_refused():
    s = int.from_bytes(SIG[32:], "little")
    for bad in (s + L, L, L + 1, 2**256 - 1):  # s + L is the same signature, "malleated"
        assert not verify(PK, MSG, SIG[:32] + bad.to_bytes(32, "little"))
    assert verify(PK, MSG, SIG[:32] + s.to_bytes(32, "little"))


def test_a_public_key_with_y_not_below_p_is_refused():
    # y = 3 is on the curve, so 3 + p is a non-canonical encoding of a valid point
    assert ed25519._decode(y_encoding(3)) is not None
    for bad in (y_encoding(3 + P), y_encoding(2**255 - 1), y_encoding(3 + P, 1)):
        with pytest.raises(ValueError, match="not canonical"):
            check_public_key(bad)
        assert not verify(bad, MSG, SIG)
    check_public_key(y_encoding(3))  # the canonical encoding is fine
    # no signature under a key 3 + p can be made without its discrete log, so the
    # decoder itself is what shows the RFC's rule (5.1.3 step 1) holds
    assert ed25519._decode(y_encoding(3 + P)) is None
    assert ed25519._minus_a_table(y_encoding(3 + P)) is None


def test_x_zero_with_the_sign_bit_set_does_not_decode():
    # RFC 8032 5.1.3 step 4; both such points also have small order
    assert ed25519._decode(y_encoding(1)) == (0, 1, 1, 0)
    assert ed25519._decode(y_encoding(1, 1)) is None
    assert ed25519._decode(y_encoding(P - 1, 1)) is None


def test_a_public_key_not_on_the_curve_is_refused():
    off = y_encoding(2)  # (y^2 - 1) / (d y^2 + 1) is not a square for y = 2
    with pytest.raises(ValueError, match="not a point on the curve"):
        check_public_key(off)
    assert not verify(off, MSG, SIG)
    with pytest.raises(ValueError, match="not a point on the curve"):
        parse_public_key("whpk_" + base64.b64encode(off).decode())


@pytest.mark.parametrize("enc", small_order_encodings(), ids=lambda e: e.hex()[:6] + e.hex()[-2:])
def test_a_small_order_public_key_is_refused(enc):
    # With A of small order, [k]A vanishes (or nearly): R = [s]B "verifies" any message.
    s = 12345
    forged = ed25519._encode(ed25519._mul_base(s)) + s.to_bytes(32, "little")
    assert not verify(enc, b"any message at all", forged)
    if int.from_bytes(enc, "little") & ((1 << 255) - 1) < P:
        with pytest.raises(ValueError, match="small order"):
            check_public_key(enc)


def test_the_identity_key_forgery_holds_without_the_small_order_check():
    # The check above is not vacuous: the bare equation accepts the forgery.
    s = 12345
    r = ed25519._encode(ed25519._mul_base(s))
    identity = y_encoding(1)
    a = ed25519._decode(identity)
    minus_a = ed25519._odd_multiples(a, ed25519._A_WIDTH)
    k = ed25519._hash_int(r, identity, b"any message") % L
    assert ed25519._encode(ed25519._straus(s, k, minus_a)) == r
    assert not verify(identity, b"any message", r + s.to_bytes(32, "little"))


def mixed_order_key(a: int):
    """A = [a]B + T8: a valid key (libsodium takes it) with a small-order part."""
    t8 = ed25519._decode(y_encoding(ed25519._Y8))
    point = ed25519._add(ed25519._mul_base(a), ed25519._cached(t8))
    return ed25519._encode(point), t8


def small_order_r_signature():
    """A signature whose R is of small order and that meets [S]B = R + [k]A
    exactly (cofactorless): only the small-order-R check refuses it."""
    a = 987654321
    pk, t8 = mixed_order_key(a)
    # R' = [s]B - [k]A = [s - k a]B - [k]T8; with s = k a mod L, R' = -[k]T8.
    torsion = [ed25519._IDENTITY]
    for _ in range(7):
        torsion.append(ed25519._add(torsion[-1], ed25519._cached(t8)))
    r = ed25519._encode(torsion[3])  # a point of order 8
    for i in range(200):  # k mod 8 must be 5 (so that -[k]T8 = [3]T8): 1 in 8 messages
        msg = b"message %d" % i
        k = ed25519._hash_int(r, pk, msg) % L
        s = k * a % L
        sig = r + s.to_bytes(32, "little")
        if ed25519._encode(ed25519._straus(s, k, ed25519._minus_a_table(pk))) == r:
            return pk, msg, sig
    raise AssertionError("no message found")  # (7/8)^200: never


def test_a_small_order_r_is_refused_even_when_the_equation_holds():
    pk, msg, sig = small_order_r_signature()
    check_public_key(pk)  # the key itself is acceptable
    assert not verify(pk, msg, sig)


def test_an_r_off_the_curve_or_non_canonical_is_refused():
    for r in (y_encoding(2), y_encoding(3 + P), b"\xff" * 32):
        assert not verify(PK, MSG, r + SIG[32:])


def test_verify_never_raises_on_garbage():
    rng = random.Random(17)
    for _ in range(200):
        pk = rng.randbytes(rng.choice([31, 32, 32, 33]))
        sig = rng.randbytes(rng.choice([63, 64, 64, 65]))
        assert verify(pk, rng.randbytes(rng.randrange(40)), sig) is False
    assert verify(bytearray(PK), memoryview(MSG), bytearray(SIG)) is True


def flips(data: bytes):
    for i in range(len(data) * 8):
        b = bytearray(data)
        b[i // 8] ^= 1 << (i % 8)
        yield bytes(b)


def test_a_flipped_bit_anywhere_is_refused():
    msg = b'msg_2KWPBgLlAfxdpx2AI54pPJ85f4W.1674087231.{"event":"ping"}'
    key = SigningKey(SEED)
    sig = key.sign(msg)
    assert verify(key.public_key, msg, sig)
    for bad in flips(sig):
        assert not verify(key.public_key, msg, bad)
    for bad in flips(key.public_key):
        assert not verify(bad, msg, sig)
    for bad in flips(msg):
        assert not verify(key.public_key, bad, sig)


# -- interop with PyNaCl (libsodium) --------------------------------------------


def nacl_accepts(pk: bytes, msg: bytes, sig: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(pk).verify(msg, sig)
        return True
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return False


@needs_nacl
def test_interop_with_pynacl_both_ways_on_random_keys_and_messages():
    rng = random.Random(2024)
    for i in range(120):
        seed = rng.randbytes(32)
        msg = rng.randbytes(rng.choice([0, 1, 2, 31, 64, 200, 1000]))
        theirs = nacl.signing.SigningKey(seed)
        their_sig = theirs.sign(msg).signature
        assert public_key(seed) == bytes(theirs.verify_key)
        assert verify(bytes(theirs.verify_key), msg, their_sig)  # webhooklite verifies PyNaCl's
        ours = sign(seed, msg)
        theirs.verify_key.verify(msg, ours)  # PyNaCl verifies webhooklite's (raises if not)
        assert ours == their_sig  # ed25519 is deterministic: the same bytes
        if i % 10 == 0:  # and a flipped bit is refused by both
            bad = bytearray(ours)
            bad[rng.randrange(64)] ^= 1 << rng.randrange(8)
            assert not verify(public_key(seed), msg, bytes(bad))
            assert not nacl_accepts(public_key(seed), msg, bytes(bad))


@needs_nacl
def test_pynacl_refuses_every_flipped_bit_we_refuse():
    seed, pk, msg, sig = (unhex(x) for x in RFC8032_VECTORS["TEST 2"])
    for bad in flips(sig):
        assert nacl_accepts(pk, msg, bad) is verify(pk, msg, bad) is False
    for bad in flips(pk):
        assert nacl_accepts(bad, msg, sig) is verify(bad, msg, sig) is False


@needs_nacl
def test_edge_cases_get_the_same_answer_as_libsodium():
    """Our checks are libsodium's: the crafted cases it refuses, we refuse, and a
    mixed-order key is judged by the same (cofactorless) equation."""
    s = int.from_bytes(SIG[32:], "little")
    cases = [
        (PK, MSG, SIG[:32] + (s + L).to_bytes(32, "little")),  # S >= L
        (y_encoding(3 + P), MSG, SIG),  # A not canonical
        (y_encoding(2), MSG, SIG),  # A not on the curve
        (PK, MSG, y_encoding(2) + SIG[32:]),  # R not on the curve
        small_order_r_signature(),  # R of small order, equation holds
    ]
    forged = ed25519._encode(ed25519._mul_base(5)) + (5).to_bytes(32, "little")
    cases += [(enc, b"m", forged) for enc in small_order_encodings()]  # A of small order
    for pk, msg, sig in cases:
        assert verify(pk, msg, sig) is False
        assert nacl_accepts(pk, msg, sig) is False, (pk.hex(), sig.hex())
    # A mixed-order key with "honest" signatures: [S]B = R + [k]A holds only up to a
    # small-order term, so a cofactored verifier accepts them all, libsodium and we
    # accept only those whose k is a multiple of 8.
    a = 424242
    pk, _ = mixed_order_key(a)
    accepted = 0
    for i in range(48):
        msg = b"mixed %d" % i
        r = ed25519._hash_int(b"nonce", msg) % L
        big_r = ed25519._encode(ed25519._mul_base(r))
        k = ed25519._hash_int(big_r, pk, msg) % L
        sig = big_r + ((r + k * a) % L).to_bytes(32, "little")
        ours = verify(pk, msg, sig)
        assert ours is nacl_accepts(pk, msg, sig) is (k % 8 == 0)
        accepted += ours
    assert 0 < accepted < 48  # both kinds occur, so the comparison means something


# -- Standard Webhooks keys: whsk_ / whpk_ --------------------------------------


def test_generate_keypair_makes_the_spec_formats_and_they_sign_and_verify():
    sk, pk = generate_keypair()
    assert sk.startswith("whsk_") and pk.startswith("whpk_")
    seed = parse_secret_key(sk)
    assert len(seed) == 32 and len(base64.b64decode(sk[5:])) == 32  # the seed, as the Python PR
    assert parse_public_key(pk) == public_key(seed)
    assert public_key_of(sk) == pk
    assert format_secret_key(seed) == sk and format_public_key(public_key(seed)) == pk
    assert verify(parse_public_key(pk), b"hello", sign(seed, b"hello"))
    assert generate_keypair()[0] != sk


def test_the_go_pull_requests_v1a_signature_is_reproduced():
    # standard-webhooks #253 (Go, crypto/ed25519), TestAsymmetricWebhookSign.
    seed = parse_secret_key("whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=")
    signed = b'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}'
    header = "v1a," + base64.b64encode(sign(seed, signed)).decode()
    assert header == (
        "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
    )


SVIX_SK = "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg=="
SVIX_PK = "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4="


def test_a_64_byte_whsk_key_as_svix_writes_it_is_read():
    # Svix's server tests: this 64-byte (seed + public key) whsk_ has this whpk_.
    assert public_key_of(SVIX_SK) == SVIX_PK
    seed = parse_secret_key(SVIX_SK)
    assert seed == base64.b64decode(SVIX_SK[5:])[:32]


def test_a_64_byte_whsk_key_with_a_foreign_public_half_is_refused():
    raw = base64.b64decode(SVIX_SK[5:])
    other = public_key(bytes(32))
    with pytest.raises(ValueError, match="second half is not the public key"):
        parse_secret_key("whsk_" + base64.b64encode(raw[:32] + other).decode())


@pytest.mark.parametrize(
    "key,message",
    [
        (SVIX_PK, "is a 'whpk_' public key: it only verifies"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "symmetric"),
        ("v1a,tQ9V2XOqn7jL", "starts with 'whsk_'"),
        ("6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbc=", "starts with 'whsk_'"),
        ("whsk_not*base64!", "not valid base64"),
        (SVIX_SK[:-3], "not valid base64"),  # cut short (Svix's "bad SK" test)
        ("whsk_" + base64.b64encode(bytes(31)).decode(), "decodes to 31 bytes"),
        ("whsk_" + base64.b64encode(bytes(33)).decode(), "decodes to 33 bytes"),
        ("whsk_", "decodes to 0 bytes"),
    ],
)
def test_bad_secret_keys_are_clear_value_errors(key, message):
    with pytest.raises(ValueError, match=message.replace("*", r"\*")) as err:
        parse_secret_key(key)
    body = key.split("_", 1)[-1]
    if len(body) > 8:
        assert body not in str(err.value)  # a secret is never echoed into logs


@pytest.mark.parametrize(
    "key,message",
    [
        (SVIX_SK, "is a 'whsk_' secret key, which stays with the sender"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "symmetric"),
        ("whpk_%%%%", "not valid base64"),
        ("whpk_" + base64.b64encode(bytes(64)).decode(), "decodes to 64 bytes"),
        ("whpk_" + base64.b64encode(y_encoding(3 + P)).decode(), "not canonical"),
        ("whpk_" + base64.b64encode(y_encoding(1)).decode(), "small order"),
    ],
)
def test_bad_public_keys_are_clear_value_errors(key, message):
    with pytest.raises(ValueError, match=message):
        parse_public_key(key)


def test_keys_tolerate_whitespace_and_missing_padding_and_refuse_bytes():
    assert parse_public_key("  " + SVIX_PK.rstrip("=") + "\n") == parse_public_key(SVIX_PK)
    assert parse_secret_key(SVIX_SK.rstrip("=")) == parse_secret_key(SVIX_SK)
    with pytest.raises(TypeError):
        parse_secret_key(SVIX_SK.encode())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="32 bytes"):
        format_secret_key(bytes(64))
    with pytest.raises(ValueError, match="32 bytes"):
        SigningKey(bytes(31))


def test_the_repr_of_a_signing_key_shows_only_the_public_key():
    key = SigningKey(SEED)
    assert repr(key) == f"<SigningKey {format_public_key(PK)}>"
    assert base64.b64encode(SEED).decode() not in repr(key)


@needs_nacl
def test_a_v1a_header_made_by_pynacl_from_a_whsk_key_verifies_with_the_whpk_key():
    sk, pk = generate_keypair()
    msg_id, timestamp = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", "1674087231"
    body = '{"event":"payment.completed","order_id":"ABC123","customer":"Jane D."}'.encode()
    signed = f"{msg_id}.{timestamp}.".encode() + body  # the spec's signed content
    their_sig = nacl.signing.SigningKey(parse_secret_key(sk)).sign(signed).signature
    header = "v1a," + base64.b64encode(their_sig).decode()

    version, b64 = header.split(",", 1)
    assert version == "v1a"
    public = parse_public_key(pk)
    assert verify(public, signed, base64.b64decode(b64))
    assert not verify(public, f"{msg_id}.1674087232.".encode() + body, base64.b64decode(b64))
    assert not verify(public, signed + b" ", base64.b64decode(b64))
    # and the 64-byte layout of the same key (libsodium's secret key) reads the same
    their_pk, sk64 = nacl.bindings.crypto_sign_seed_keypair(parse_secret_key(sk))
    assert their_pk == public
    assert parse_secret_key("whsk_" + base64.b64encode(sk64).decode()) == parse_secret_key(sk)


def test_import_webhooklite_does_not_load_ed25519():
    code = "import sys, webhooklite; print('webhooklite.ed25519' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
