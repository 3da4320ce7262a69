"""Standard Webhooks v1a (ed25519) end to end: whsk_ keys sign, whpk_ keys verify, lists mix with whsec_."""
import base64
import http.client
import json

import pytest

import webhooklite
from webhooklite import SignatureError, Signer, verify
from webhooklite.events import encode_event


def test_keypair_format():
    sk, pk = webhooklite.generate_keypair()
    assert sk.startswith("whsk_") and pk.startswith("whpk_")
    assert len(base64.b64decode(sk[5:])) == 32 and len(base64.b64decode(pk[5:])) == 32
    assert webhooklite.generate_keypair() != (sk, pk)


def test_a_whsk_sender_signs_v1a_and_a_whpk_receiver_verifies_it():
    sk, pk = webhooklite.generate_keypair()
    receiver = webhooklite.Receiver(pk)
    seen = []
    receiver.on("payment.completed", lambda e: seen.append((e.id, e["item"])))
    with receiver.start() as server, webhooklite.Sender(server.url, sk) as sender:
        d = sender.send("payment.completed", {"item": "Blue T-Shirt"}, id="msg_v1a")
        # Signed with another key pair: refused.
        other, _ = webhooklite.generate_keypair()
        bad = webhooklite.send(server.url, "payment.completed", {"item": "x"}, secret=other)
        # An HMAC-signed request to a receiver that holds only a public key: refused, with the reason.
        hmac_only = webhooklite.send(server.url, "payment.completed", {"item": "x"}, secret=webhooklite.generate_secret())
    assert d.ok and seen == [("msg_v1a", "Blue T-Shirt")]
    assert bad.status == 401 and hmac_only.status == 401
    assert b"v1a" in hmac_only.response_body


def test_a_public_key_never_signs():
    _, pk = webhooklite.generate_keypair()
    with pytest.raises(ValueError, match="only verifies"):
        webhooklite.Sender("http://127.0.0.1:9/", pk)
    with pytest.raises(ValueError, match="only verif"):
        webhooklite.Sender("http://127.0.0.1:9/", [webhooklite.generate_secret(), pk])
    with pytest.raises(ValueError, match="only verif"):
        webhooklite.sign(b"{}", pk)


@pytest.mark.parametrize("scheme", ["github", "stripe"])
def test_v1a_keys_are_standard_webhooks_only(scheme):
    sk, pk = webhooklite.generate_keypair()
    for key in (sk, pk):
        with pytest.raises(ValueError, match="scheme='standard'"):
            webhooklite.Receiver(key, scheme=scheme)


def test_a_list_mixing_whsec_and_whsk_emits_every_signature_and_either_key_verifies():
    sk, pk = webhooklite.generate_keypair()
    hmac_secret = webhooklite.generate_secret()
    body = encode_event("ping", {})
    headers = webhooklite.sign(body, [sk, hmac_secret], msg_id="msg_mix")
    versions = [part.split(",", 1)[0] for part in headers["webhook-signature"].split()]
    assert versions == ["v1a", "v1"]
    assert verify(body, headers, pk).id == "msg_mix"
    assert verify(body, headers, hmac_secret).id == "msg_mix"
    assert verify(body, headers, [hmac_secret, pk]).id == "msg_mix"
    with pytest.raises(SignatureError):
        verify(body, headers, webhooklite.generate_keypair()[1])


def test_a_flipped_bit_anywhere_is_refused():
    sk, pk = webhooklite.generate_keypair()
    body = encode_event("ping", {"n": 1})
    headers = webhooklite.sign(body, sk, msg_id="msg_bits", timestamp=1_700_000_000)
    now = lambda: 1_700_000_000.0  # noqa: E731
    assert verify(body, headers, pk, now=now)
    sig = base64.b64decode(headers["webhook-signature"][4:])
    for i in range(0, 64 * 8, 37):
        flipped = bytearray(sig)
        flipped[i // 8] ^= 1 << (i % 8)
        forged = dict(headers, **{"webhook-signature": "v1a," + base64.b64encode(bytes(flipped)).decode()})
        with pytest.raises(SignatureError):
            verify(body, forged, pk, now=now)
    for i in range(len(body)):
        changed = body[:i] + bytes([body[i] ^ 1]) + body[i + 1:]
        with pytest.raises(SignatureError):
            Signer(pk, now=now).check(changed, headers)
    for forged in (dict(headers, **{"webhook-id": "msg_other"}), dict(headers, **{"webhook-timestamp": "1700000001"})):
        with pytest.raises(SignatureError):
            verify(body, forged, pk, now=now)


def test_many_v1a_signatures_cost_a_bounded_number_of_verifications(monkeypatch):
    from webhooklite import ed25519

    calls = []
    real = ed25519.verify
    monkeypatch.setattr(ed25519, "verify", lambda *a: calls.append(1) or real(*a))
    keys = [webhooklite.generate_keypair()[1] for _ in range(3)]
    junk = " ".join("v1a," + base64.b64encode(bytes([i]) * 64).decode() for i in range(50))
    headers = {"webhook-id": "m", "webhook-timestamp": "1700000000", "webhook-signature": junk}
    with pytest.raises(SignatureError):
        verify(b"{}", headers, keys, now=lambda: 1_700_000_000.0)
    assert len(calls) == 4


def test_interop_with_pynacl_both_ways():
    nacl_signing = pytest.importorskip("nacl.signing", reason="PyNaCl (test-only) is not installed")
    # PyNaCl signs, webhooklite verifies.
    key = nacl_signing.SigningKey.generate()
    pk = "whpk_" + base64.b64encode(bytes(key.verify_key)).decode()
    body, msg_id, ts = encode_event("ping", {"from": "nacl"}), "msg_nacl", 1_700_000_000
    sig = key.sign(f"{msg_id}.{ts}.".encode() + body).signature
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": "v1a," + base64.b64encode(sig).decode()}
    assert verify(body, headers, pk, now=lambda: float(ts)).data["from"] == "nacl"
    # webhooklite signs (from a whsk_ seed), PyNaCl verifies.
    sk, pk2 = webhooklite.generate_keypair()
    mine = webhooklite.sign(body, sk, msg_id=msg_id, timestamp=ts)
    verify_key = nacl_signing.VerifyKey(base64.b64decode(pk2[5:]))
    raw = base64.b64decode(mine["webhook-signature"][4:])
    assert verify_key.verify(f"{msg_id}.{ts}.".encode() + body, raw)
    assert bytes(nacl_signing.SigningKey(base64.b64decode(sk[5:])).verify_key) == base64.b64decode(pk2[5:])


def test_the_cli_makes_a_key_pair_and_send_listen_verify_take_the_keys(tmp_path):
    import os
    import subprocess
    import sys
    import time

    env = dict(os.environ, PYTHONPATH=os.getcwd())
    run = lambda *a: subprocess.run([sys.executable, "-m", "webhooklite", *a], capture_output=True, text=True, env=env, timeout=30)  # noqa: E731
    out = run("secret", "--v1a")
    assert out.returncode == 0
    sk, pk = out.stdout.split()
    assert sk.startswith("whsk_") and pk.startswith("whpk_")
    saved = tmp_path / "saved"
    listener = subprocess.Popen(
        [sys.executable, "-m", "webhooklite", "listen", "--port", "0", "--secret", pk, "--save", str(saved)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        url = listener.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        ok = run("send", url, "payment.completed", '{"item": "Blue T-Shirt"}', "--secret", sk)
        assert ok.returncode == 0, ok.stderr
        other_sk, _ = webhooklite.generate_keypair()
        bad = run("send", url, "payment.completed", "{}", "--secret", other_sk, "--retries", "0")
        assert bad.returncode == 1 and "401" in bad.stderr
        refused = run("send", url, "payment.completed", "{}", "--secret", pk)
        assert refused.returncode == 2 and "only verifies" in refused.stderr
        deadline = time.monotonic() + 10
        while len(list(saved.glob("*.json"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        listener.terminate()
        listener.wait(10)
    files = sorted(str(p) for p in saved.glob("*.json"))
    assert len(files) == 2
    check = run("verify", *files, "--secret", pk)
    assert check.returncode == 1  # the one signed with another key does not verify
    assert check.stdout.count("ok, the standard signature verifies") == 1
