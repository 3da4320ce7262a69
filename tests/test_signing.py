"""Signing and verification: the published vectors, rotation, tolerance, and errors that say what to fix."""
import datetime
import json
import random

import pytest

import webhooklite
from webhooklite import SignatureError, Signer, TimestampError, sign, verify

STD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STD_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
STD_TS = 1614265330
STD_BODY = b'{"test": 2432232314}'
STD_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

GH_SECRET = "It's a Secret to Everybody"
GH_BODY = b"Hello, World!"
GH_SIG = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

STRIPE_SECRET = "whsec_test_secret"
STRIPE_BODY = b'{"id":"evt_test_webhook","object":"event"}'
STRIPE_SIG = "t=1614265330,v1=3c5817089d739023dd6190f70a3757e04f7a2fd8b5dab12c2e000f51970dccff"


def at(ts):
    return lambda: float(ts)


# -- the published vectors ---------------------------------------------------


def test_standard_webhooks_vector():
    headers = sign(STD_BODY, STD_SECRET, msg_id=STD_ID, timestamp=STD_TS)
    assert headers == {"webhook-id": STD_ID, "webhook-timestamp": str(STD_TS), "webhook-signature": STD_SIG}
    event = verify(STD_BODY, headers, STD_SECRET, now=at(STD_TS))
    assert (event.id, event.type, event.data) == (STD_ID, None, {"test": 2432232314})
    assert event.timestamp == datetime.datetime.fromtimestamp(STD_TS, datetime.timezone.utc)
    assert event.body == STD_BODY and event.headers["webhook-id"] == STD_ID


def test_github_vector():
    assert sign(GH_BODY, GH_SECRET, scheme="github") == {"X-Hub-Signature-256": GH_SIG}
    # The published body is not JSON: the signature check alone passes, verify() says it is no webhook.
    assert Signer(GH_SECRET, "github").check(GH_BODY, {"X-Hub-Signature-256": GH_SIG}) == (None, None)
    with pytest.raises(webhooklite.PayloadError):
        verify(GH_BODY, {"X-Hub-Signature-256": GH_SIG}, GH_SECRET, scheme="github")


def test_stripe_vector():
    assert sign(STRIPE_BODY, STRIPE_SECRET, scheme="stripe", timestamp=STD_TS) == {"Stripe-Signature": STRIPE_SIG}
    event = verify(STRIPE_BODY, {"stripe-signature": STRIPE_SIG}, STRIPE_SECRET, scheme="stripe", now=at(STD_TS))
    assert event.id == "evt_test_webhook" and event.timestamp.timestamp() == STD_TS


def test_svix_spelling_is_accepted():
    headers = {"svix-id": STD_ID, "svix-timestamp": str(STD_TS), "svix-signature": STD_SIG}
    assert verify(STD_BODY, headers, STD_SECRET, now=at(STD_TS)).id == STD_ID


def test_secret_forms_for_standard():
    raw = b"\x01" * 32
    as_whsec = "whsec_" + __import__("base64").b64encode(raw).decode()
    assert sign(b"x", raw, msg_id="m", timestamp=1) == sign(b"x", as_whsec, msg_id="m", timestamp=1)
    # Without the prefix a string is base64 too, as the official standardwebhooks and svix libraries read it.
    assert sign(b"x", as_whsec[6:], msg_id="m", timestamp=1) == sign(b"x", raw, msg_id="m", timestamp=1)
    assert sign(b"x", STD_SECRET[6:], msg_id=STD_ID, timestamp=STD_TS) == sign(b"x", STD_SECRET, msg_id=STD_ID, timestamp=STD_TS)
    with pytest.raises(ValueError, match="base64"):
        Signer("not base64!")
    # GitHub and Stripe use the secret string whole.
    assert sign(b"x", "plain", scheme="github") == sign(b"x", b"plain", scheme="github")


# -- rotation ------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["standard", "github", "stripe"])
def test_rotation_accepts_any_key_and_signs_with_the_newest(scheme):
    new, old = webhooklite.generate_secret(), webhooklite.generate_secret()
    body = b'{"event":"ping"}'
    by_old = sign(body, old, scheme=scheme, msg_id="m1", timestamp=STD_TS)
    by_both = sign(body, [new, old], scheme=scheme, msg_id="m1", timestamp=STD_TS)
    assert verify(body, by_old, [new, old], scheme=scheme, now=at(STD_TS)) 
    # Signed with both keys, it verifies for a receiver that knows either one.
    assert verify(body, by_both, new, scheme=scheme, now=at(STD_TS)) 
    if scheme != "github":  # GitHub's header holds one signature: the newest key's
        assert verify(body, by_both, old, scheme=scheme, now=at(STD_TS)) 
    else:
        with pytest.raises(SignatureError):
            verify(body, by_both, old, scheme=scheme)
    with pytest.raises(SignatureError):
        verify(body, by_old, new, scheme=scheme, now=at(STD_TS))


def test_standard_signature_header_lists_every_key():
    headers = sign(b"{}", [webhooklite.generate_secret(), webhooklite.generate_secret()], msg_id="m", timestamp=1)
    parts = headers["webhook-signature"].split(" ")
    assert len(parts) == 2 and all(p.startswith("v1,") for p in parts)


# -- tolerance -----------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["standard", "stripe"])
def test_timestamp_tolerance_past_and_future(scheme):
    headers = sign(STD_BODY, STRIPE_SECRET if scheme == "stripe" else STD_SECRET, scheme=scheme, msg_id="m", timestamp=STD_TS)
    secret = STRIPE_SECRET if scheme == "stripe" else STD_SECRET
    assert verify(STD_BODY, headers, secret, scheme=scheme, now=at(STD_TS + 300))
    assert verify(STD_BODY, headers, secret, scheme=scheme, now=at(STD_TS - 300))
    with pytest.raises(TimestampError) as past:
        verify(STD_BODY, headers, secret, scheme=scheme, now=at(STD_TS + 412))
    assert "412 seconds in the past" in str(past.value) and "behind" in str(past.value)
    assert past.value.skew == -412
    with pytest.raises(TimestampError) as future:
        verify(STD_BODY, headers, secret, scheme=scheme, now=at(STD_TS - 1000))
    assert "1000 seconds in the future" in str(future.value) and "ahead" in str(future.value)
    assert verify(STD_BODY, headers, secret, scheme=scheme, tolerance=2000, now=at(STD_TS - 1000))


# -- errors that say what to fix -----------------------------------------------


def test_missing_header_is_named():
    with pytest.raises(SignatureError, match="missing webhook-signature header"):
        verify(STD_BODY, {"webhook-id": "m", "webhook-timestamp": "1"}, STD_SECRET)
    with pytest.raises(SignatureError, match="missing webhook-timestamp header"):
        verify(STD_BODY, {"webhook-id": "m", "webhook-signature": STD_SIG}, STD_SECRET)
    with pytest.raises(SignatureError, match="missing Stripe-Signature header"):
        verify(STD_BODY, {}, STRIPE_SECRET, scheme="stripe")
    with pytest.raises(SignatureError, match="missing X-Hub-Signature-256 header"):
        verify(GH_BODY, {}, GH_SECRET, scheme="github")


def test_wrong_scheme_is_suggested():
    headers = {"X-Hub-Signature-256": GH_SIG}
    with pytest.raises(SignatureError, match="scheme='github'"):
        verify(GH_BODY, headers, STD_SECRET)


def test_github_sha1_only_is_explained():
    with pytest.raises(SignatureError, match="SHA-1"):
        verify(GH_BODY, {"X-Hub-Signature": "sha1=abc"}, GH_SECRET, scheme="github")


def test_reserialized_body_is_diagnosed():
    original = b'{"event": "payment.completed", "item": "Blue T-Shirt", "amount": 25.0}'
    headers = sign(original, STD_SECRET, msg_id="m", timestamp=STD_TS)
    reparsed = json.dumps(json.loads(original), separators=(",", ":")).encode()
    with pytest.raises(SignatureError) as e:
        verify(reparsed, headers, STD_SECRET, now=at(STD_TS))
    assert "re-serialized" in str(e.value) and "raw request bytes" in str(e.value)
    # The public reason stays short and says nothing of the secret.
    assert e.value.public == "signature does not match"


@pytest.mark.parametrize(
    "bad_secret,hint",
    [
        ("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "signature, not the signing secret"),
        ("sk_live_abcdefghijklmnopqrstuvwx", "Stripe API key"),
        ("c2hvcnQ=", "no 'whsec_' prefix"),
    ],
)
def test_secret_that_looks_wrong_is_explained(bad_secret, hint):
    # Refused when the Signer is built (not base64), or when a signature does not match: with the hint.
    headers = sign(STD_BODY, STD_SECRET, msg_id="m", timestamp=STD_TS)
    with pytest.raises((SignatureError, ValueError)) as e:
        verify(STD_BODY, headers, bad_secret, now=at(STD_TS))
    assert hint in str(e.value)
    assert bad_secret not in str(e.value)


def test_stripe_secret_without_prefix_is_explained():
    headers = sign(STRIPE_BODY, STRIPE_SECRET, scheme="stripe", timestamp=STD_TS)
    with pytest.raises(SignatureError, match="whsec_"):
        verify(STRIPE_BODY, headers, "test_secret", scheme="stripe", now=at(STD_TS))


@pytest.mark.parametrize(
    "secret,message",
    [
        ("whsec_not*base64!", "not valid base64"),
        ("whsec_c2hvcnQ=", "decodes to 5 bytes"),
        ("", "empty"),
        ([], "empty"),
    ],
)
def test_bad_secrets_are_refused_when_built(secret, message):
    with pytest.raises(ValueError, match=message):
        webhooklite.Receiver(secret)
    with pytest.raises(ValueError, match=message):
        webhooklite.Sender("http://127.0.0.1:9/", secret)


def test_generate_secret_round_trips():
    secret = webhooklite.generate_secret()
    assert secret.startswith("whsec_") and len(__import__("base64").b64decode(secret[6:])) == 32
    headers = sign(b"{}", secret, msg_id="m")
    event = verify(b"{}", headers, secret)
    assert event and event.id == "m" and event.data == {}  # truthy even with an empty body


def test_signer_repr_hides_the_secret():
    s = Signer(STD_SECRET)
    assert "MfKQ" not in repr(s) and "MfKQ" not in repr(webhooklite.Receiver(STD_SECRET))
    assert "MfKQ" not in repr(webhooklite.Sender("http://127.0.0.1:9/", STD_SECRET))


@pytest.mark.parametrize(
    "headers",
    [
        {"webhook-id": "m", "webhook-timestamp": "abc", "webhook-signature": STD_SIG},
        {"webhook-id": "m", "webhook-timestamp": "-5", "webhook-signature": STD_SIG},
        {"webhook-id": "m", "webhook-timestamp": "١٢٣", "webhook-signature": STD_SIG},
        {"webhook-id": "m", "webhook-timestamp": str(STD_TS), "webhook-signature": "v1"},
        {"webhook-id": "m", "webhook-timestamp": str(STD_TS), "webhook-signature": "v1,"},
        {"webhook-id": "m", "webhook-timestamp": str(STD_TS), "webhook-signature": "v1,!!!notbase64"},
        {"webhook-id": "m", "webhook-timestamp": str(STD_TS), "webhook-signature": "v1,ü€"},
        {"webhook-id": "m", "webhook-timestamp": str(STD_TS), "webhook-signature": "v1a,abc"},
        {"webhook-id": "m", "webhook-timestamp": "9" * 400, "webhook-signature": STD_SIG},
    ],
)
def test_malformed_standard_headers_raise_signature_error(headers):
    with pytest.raises(SignatureError):
        verify(STD_BODY, headers, STD_SECRET, now=at(STD_TS))


def test_random_header_garbage_only_ever_raises_signature_error():
    rnd = random.Random(1234)
    alphabet = "v1,=t sha256 \x00\xff\u00e9abc0123456789+/-_"
    for _ in range(2000):
        value = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40)))
        for scheme, headers in (
            ("standard", {"webhook-id": value[:5], "webhook-timestamp": value[5:15] or "1", "webhook-signature": value}),
            ("github", {"X-Hub-Signature-256": value}),
            ("stripe", {"Stripe-Signature": value}),
        ):
            try:
                verify(STD_BODY, headers, STD_SECRET if scheme == "standard" else STRIPE_SECRET, scheme=scheme)
            except SignatureError:
                pass


def test_many_signatures_cost_no_more_hmacs(monkeypatch):
    # An unsigned caller must not buy one HMAC over a big body per signature it lists.
    calls = []
    real = webhooklite.signing._hmac
    monkeypatch.setattr(webhooklite.signing, "_hmac", lambda k, d: calls.append(1) or real(k, d))
    body = b"x" * 200_000  # not JSON: no re-serialization probe
    sigs = " ".join(["v1,AAAA"] * 5000)
    headers = {"webhook-id": "m", "webhook-timestamp": str(STD_TS), "webhook-signature": sigs}
    with pytest.raises(SignatureError):
        verify(body, headers, [STD_SECRET, webhooklite.generate_secret()], now=at(STD_TS))
    assert len(calls) == 2  # one per key


def test_check_returns_the_id_the_signature_covers():
    headers = {"svix-id": STD_ID, "svix-timestamp": str(STD_TS), "svix-signature": STD_SIG, "webhook-id": "forged"}
    assert Signer(STD_SECRET, now=at(STD_TS)).check(STD_BODY, headers) == (STD_TS, STD_ID)
    assert Signer(GH_SECRET, "github").check(GH_BODY, {"X-Hub-Signature-256": GH_SIG}) == (None, None)


@pytest.mark.parametrize("ts", ["²", "١٢٣", "1614265330 x", "+1614265330"])
def test_non_ascii_or_signed_digits_are_not_timestamps(ts):
    with pytest.raises(SignatureError, match="not a Unix time"):
        verify(STD_BODY, {"webhook-id": "m", "webhook-timestamp": ts, "webhook-signature": STD_SIG}, STD_SECRET)
