"""A signed body must not be replayed, re-routed or run twice (the first review's receiving items).

Each test drives a real Receiver over a real loopback socket, the way an attacker who captured
one signed request would: same body, same signature, with unsigned headers added or changed.
"""
import http.client
import json
import socket

import pytest

import webhooklite
from conftest import SECRET, signed
from webhooklite import Signer, verify

STRIPE_SECRET = "whsec_test_secret"


def post(server, headers, body):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        conn.request("POST", "/", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


# -- 1. an unsigned header re-routes a signed body ------------------------------------


@pytest.mark.parametrize("scheme", ["standard", "stripe"])
def test_x_github_event_does_not_reroute_a_signed_body(scheme):
    secret = SECRET if scheme == "standard" else STRIPE_SECRET
    receiver = webhooklite.Receiver(secret, scheme=scheme)
    refunds = []
    receiver.on("payment.refund", lambda e: refunds.append(e.id))
    body = webhooklite.events.encode_event("order.created", {"order_id": "ABC123"}, id="evt_1")
    headers = {"Content-Type": "application/json", **webhooklite.sign(body, secret, scheme=scheme, msg_id="msg_1")}
    with receiver.start() as server:
        # The original: nobody handles order.created.
        assert post(server, headers, body) == (200, {"status": "ignored", "reason": "no handler for this event type"})
        # Captured and replayed inside the window with an unsigned header added: never the refund handler.
        forged = dict(headers, **{"X-GitHub-Event": "payment.refund"})
        status, answer = post(server, forged, body)
        assert status == 200 and answer["status"] == "duplicate"
        # Even a first delivery with the header is routed by its signed body.
        other = webhooklite.events.encode_event("order.created", {"order_id": "ABC124"}, id="evt_2")
        first = {"Content-Type": "application/json", "X-GitHub-Event": "payment.refund",
                 **webhooklite.sign(other, secret, scheme=scheme, msg_id="msg_2")}
        assert post(server, first, other)[1]["status"] == "ignored"
    assert refunds == []


def test_github_scheme_still_routes_on_x_github_event():
    receiver = webhooklite.Receiver("It's a Secret to Everybody", scheme="github")
    seen = []
    receiver.on("issues.opened", lambda e: seen.append(e.type))
    with receiver.start() as server:
        d = webhooklite.Sender(server.url, "It's a Secret to Everybody", scheme="github").send("issues", {"action": "opened"})
    assert d.ok and seen == ["issues.opened"]


# -- 2. Stripe dedupe on an unsigned id ---------------------------------------------


def test_stripe_body_without_id_runs_once_whatever_the_unsigned_headers():
    receiver = webhooklite.Receiver(STRIPE_SECRET, scheme="stripe")
    runs = []
    receiver.on("charge.succeeded", lambda e: runs.append(e.id))
    body = b'{"type":"charge.succeeded","data":{"amount":2500}}'  # no "id"
    sig = webhooklite.sign(body, STRIPE_SECRET, scheme="stripe")
    with receiver.start() as server:
        answers = [
            post(server, {"Content-Type": "application/json", **sig, **extra}, body)[1]["status"]
            for extra in ({}, {"webhook-id": "a"}, {"webhook-id": "b"}, {"svix-id": "c", "X-GitHub-Delivery": "d"})
        ]
    assert answers == ["ok", "duplicate", "duplicate", "duplicate"]
    assert len(runs) == 1 and runs[0].startswith("sha256:")


def test_stripe_sender_puts_the_message_id_in_its_envelope():
    receiver = webhooklite.Receiver(STRIPE_SECRET, scheme="stripe")
    runs = []
    receiver.on("payment_intent.succeeded", lambda e: runs.append(e.id))
    with receiver.start() as server, webhooklite.Sender(server.url, STRIPE_SECRET, scheme="stripe") as sender:
        first = sender.send("payment_intent.succeeded", {"amount": 2500}, id="evt_42")
        # A retry of the same message is signed afresh (new timestamp): still one message.
        again = sender.send("payment_intent.succeeded", {"amount": 2500}, id="evt_42")
    assert first.ok and again.ok and json.loads(again.response_body)["status"] == "duplicate"
    assert runs == ["evt_42"]
    with pytest.raises(ValueError, match="'id'"):
        webhooklite.Sender("http://127.0.0.1:9/", STRIPE_SECRET, scheme="stripe").send("x", {"id": 5})


# -- 3. unprefixed Standard Webhooks secrets ------------------------------------------


def test_unprefixed_secret_is_base64_as_the_official_libraries_read_it():
    unprefixed = SECRET[len("whsec_"):]
    body = b'{"event":"ping"}'
    headers = webhooklite.sign(body, unprefixed, msg_id="msg_1")
    assert headers == webhooklite.sign(body, SECRET, msg_id="msg_1", timestamp=int(headers["webhook-timestamp"]))
    assert verify(body, headers, SECRET).id == "msg_1"
    standardwebhooks = pytest.importorskip("standardwebhooks", reason="the official standardwebhooks package is not installed")
    for key in (SECRET, unprefixed):
        assert standardwebhooks.Webhook(key).verify(body, headers) == {"event": "ping"}


# -- 4. one argument order, a useful return -------------------------------------------


def test_swapped_arguments_are_a_clear_type_error():
    headers, body = signed()
    with pytest.raises(TypeError, match="body comes first"):
        verify(headers, body, SECRET)
    with pytest.raises(TypeError, match="body comes first"):
        Signer(SECRET).verify(headers, body)
    with pytest.raises(TypeError, match="body comes first"):
        Signer(SECRET).check(headers, body)


@pytest.mark.parametrize("scheme,secret", [("standard", SECRET), ("github", "It's a Secret"), ("stripe", STRIPE_SECRET)])
def test_verify_returns_a_truthy_event_for_every_scheme(scheme, secret):
    body = b"{}"
    headers = {"X-GitHub-Event": "ping", **webhooklite.sign(body, secret, scheme=scheme, msg_id="msg_1")}
    event = verify(body, headers, secret, scheme=scheme)
    assert event and isinstance(event, webhooklite.Event) and event.data == {}
    if scheme == "github":
        assert event.type == "ping" and event.timestamp is None
    else:
        assert event.type is None and event.timestamp is not None


# -- 5. signing edge cases ----------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["standard", "stripe"])
def test_negative_timestamp_is_refused_when_signing(scheme):
    with pytest.raises(ValueError, match="0 or more"):
        webhooklite.sign(b"{}", SECRET, scheme=scheme, timestamp=-1)


def test_a_signature_header_on_two_lines_counts_each_line():
    receiver = webhooklite.Receiver(SECRET)
    runs = []
    receiver.on("*", lambda e: runs.append(e.id))
    headers, body = signed(msg_id="msg_two_lines")
    good = headers.pop("webhook-signature")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with receiver.start() as server:
        for lines in ([good, "v1,AAAA v1,BBBB"], ["v1,AAAA", good + " v1,CCCC"]):
            extra = "".join(f"webhook-signature: {line}\r\n" for line in lines)
            request = (
                f"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n{head}{extra}\r\n"
            ).encode() + body
            with socket.create_connection((server.host, server.port), timeout=5) as s:
                s.sendall(request)
                answer = b""
                while chunk := s.recv(4096):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert runs == ["msg_two_lines"]
