"""The envelope, type and id extraction, and routing (pure functions: no sockets needed)."""
import dataclasses
import datetime
import decimal
import enum
import json
import uuid
from urllib.parse import urlencode

import pytest

import webhooklite
from conftest import SECRET, signed
from webhooklite.errors import PayloadError
from webhooklite.events import Router, decode_body, encode_event, encode_json, event_id, event_type
from webhooklite.headers import Headers


def test_envelope_shape_from_the_brief():
    body = encode_event(
        "payment.completed",
        {"order_id": "ABC123", "customer": "Jane D.", "item": "Blue T-Shirt", "amount": 25.00},
        now=lambda: "2026-04-14T08:30:00Z",
    )
    assert body == (
        b'{"event":"payment.completed","order_id":"ABC123","customer":"Jane D.",'
        b'"item":"Blue T-Shirt","amount":25.0,"time":"2026-04-14T08:30:00Z"}'
    )


def test_callers_time_is_kept_in_place():
    body = encode_event("x", {"time": "2020-01-01T00:00:00Z", "a": 1})
    assert body == b'{"event":"x","time":"2020-01-01T00:00:00Z","a":1}'


def test_encoded_types():
    class Colour(enum.Enum):
        BLUE = "blue"

    @dataclasses.dataclass
    class Line:
        sku: str
        qty: int

    body = encode_json(
        {
            "price": decimal.Decimal("25.10"),
            "tiny": decimal.Decimal("1E-7"),
            "when": datetime.datetime(2026, 4, 14, 8, 30, tzinfo=datetime.timezone.utc),
            "day": datetime.date(2026, 4, 14),
            "id": uuid.UUID(int=255),
            "colour": Colour.BLUE,
            "line": Line("TS-BLUE", 1),
            "name": "Zoë",
        }
    )
    assert body.decode() == (
        '{"price":25.10,"tiny":1E-7,"when":"2026-04-14T08:30:00Z","day":"2026-04-14",'
        '"id":"00000000-0000-0000-0000-0000000000ff","colour":"blue","line":{"sku":"TS-BLUE","qty":1},"name":"Zoë"}'
    )
    assert json.loads(body)["price"] == 25.1


def test_decimal_marker_cannot_be_forged_by_data():
    body = encode_json({"a": decimal.Decimal("1.50"), "b": "\x00dec"})
    assert json.loads(body) == {"a": 1.5, "b": "\x00dec"}


def test_unencodable_values_are_type_errors():
    with pytest.raises(TypeError):
        encode_json({"x": object()})
    with pytest.raises(ValueError):
        encode_json({"x": float("nan")})
    with pytest.raises(TypeError):
        encode_event("x", ["not", "a", "dict"])


def test_event_type_rules():
    gh = Headers({"X-GitHub-Event": "issues"})
    assert event_type(gh, {"action": "opened"}, "github") == "issues.opened"
    assert event_type(gh, {"ref": "main"}, "github") == "issues"
    assert event_type(Headers(), {"event": "payment.completed", "type": "t"}) == "payment.completed"
    assert event_type(Headers(), {"type": "payment_intent.succeeded"}) == "payment_intent.succeeded"
    assert event_type(Headers(), [1, 2]) is None and event_type(Headers(), {"event": 5}) is None
    # GitHub signs no header: under another scheme X-GitHub-Event never changes the type.
    for scheme in ("standard", "stripe"):
        assert event_type(gh, {"type": "charge.succeeded"}, scheme) == "charge.succeeded"
        assert event_type(gh, {}, scheme) is None


def test_event_id_rules():
    # Unsigned (development) or shown by the CLI: any id header, else the body's.
    assert event_id(Headers({"webhook-id": "a", "svix-id": "b"}), {"id": "c"}) == "a"
    assert event_id(Headers({"svix-id": "b"}), {}) == "b"
    assert event_id(Headers({"X-GitHub-Delivery": "g"}), {}) == "g"
    assert event_id(Headers(), {"id": "evt_1"}) == "evt_1"
    assert event_id(Headers(), {}) is None
    # Signed: only what the signature covers.
    forged = Headers({"webhook-id": "forged", "X-GitHub-Delivery": "g"})
    assert event_id(forged, {"id": "c"}, "standard", signed_id="m1", signed=True) == "m1"
    assert event_id(forged, {"id": "evt_1"}, "stripe", timestamp=5, body=b"{}", signed=True) == "evt_1"
    a = event_id(forged, {}, "stripe", timestamp=5, body=b"{}", signed=True)
    b = event_id(Headers(), {}, "stripe", timestamp=5, body=b"{}", signed=True)
    c = event_id(forged, {}, "stripe", timestamp=6, body=b"{}", signed=True)
    assert a == b != c and a.startswith("sha256:")
    assert event_id(forged, {"id": "c"}, "github", signed=True) == "g"


def test_github_form_encoding():
    payload = '{"action":"opened","issue":{"title":"Hi"}}'
    body = urlencode({"payload": payload}).encode()
    assert decode_body(body, "application/x-www-form-urlencoded") == json.loads(payload)
    with pytest.raises(PayloadError):
        decode_body(b"other=1", "application/x-www-form-urlencoded")


@pytest.mark.parametrize("body", [b"", b"   ", b"{", b"\xff", b"[" * 100_000, b"nul\x00"])
def test_bad_bodies_are_payload_errors(body):
    with pytest.raises(PayloadError):
        decode_body(body)


def test_router_order_and_patterns():
    r = Router()
    calls = []
    f1, f2, f3, f4 = (lambda e, n=n: calls.append(n) for n in range(4))
    r.add("payment.*", f1)
    r.add("*", f2)
    r.add("payment.completed", f3)
    r.add("payment.[cr]*", f4)
    assert r.match("payment.completed") == (f1, f2, f3, f4)
    assert r.match("payment.refunded") == (f1, f2, f4)
    assert r.match("order.shipped") == (f2,)
    assert r.match(None) == (f2,)
    assert r.match("PAYMENT.COMPLETED") == (f2,)  # case-sensitive, like fnmatchcase


def test_on_as_decorator_and_call_returns_the_function():
    receiver = webhooklite.Receiver(SECRET)

    def f(event):
        pass

    assert receiver.on("a", f) is f
    assert receiver.on("b")(f) is f
    with pytest.raises(ValueError):
        receiver.on("")


def test_handle_sans_io_gives_a_full_event():
    seen = []
    receiver = webhooklite.Receiver(SECRET)
    receiver.on("payment.completed", seen.append)
    headers, body = signed(data={"item": "Blue T-Shirt", "amount": 25.0}, msg_id="msg_e1")
    response = receiver.handle("POST", "/", headers, body)
    assert response.status == 200 and json.loads(response.body) == {"status": "ok"}
    (event,) = seen
    assert event.type == "payment.completed" and event.id == "msg_e1"
    assert event["item"] == "Blue T-Shirt" and dict(event)["amount"] == 25.0
    assert event.headers["WEBHOOK-ID"] == "msg_e1" and event.body == body
    assert event.timestamp.tzinfo is datetime.timezone.utc
    assert abs(event.timestamp.timestamp() - int(headers["webhook-timestamp"])) < 1


def test_star_handler_sees_non_object_json():
    seen = []
    receiver = webhooklite.Receiver(SECRET)
    receiver.on("*", seen.append)
    headers, body = signed(body=b'["a", 1]')
    assert receiver.handle("POST", "/", headers, body).status == 200
    assert seen[0].type is None and seen[0].data == ["a", 1] and len(seen[0]) == 0


@pytest.mark.parametrize("status,reason", [(200, "OK"), (413, "Content Too Large"), (429, "Too Many Requests"), (799, "")])
def test_response_reason_phrases(status, reason):
    assert webhooklite.Response(status).reason == reason


def test_replay_with_an_added_id_header_is_still_a_duplicate():
    # svix-* headers are what is signed; an unsigned webhook-id added by a replayer must not count.
    runs = []
    receiver = webhooklite.Receiver(SECRET)
    receiver.on("payment.completed", lambda e: runs.append(e.id))
    headers, body = signed(msg_id="msg_svix")
    svix = {k.replace("webhook-", "svix-"): v for k, v in headers.items()}
    assert receiver.handle("POST", "/", svix, body).status == 200
    replay = receiver.handle("POST", "/", dict(svix, **{"webhook-id": "msg_forged"}), body)
    assert replay.status == 200 and b"duplicate" in replay.body
    assert runs == ["msg_svix"]


def test_huge_integer_is_400_not_500():
    receiver = webhooklite.Receiver(SECRET)
    receiver.on("*", lambda e: None)
    headers, body = signed(body=b'{"event":"x","n":' + b"9" * 5000 + b"}")
    response = receiver.handle("POST", "/", headers, body)
    assert response.status == 400 and b"not valid JSON" in response.body


def test_fixed_answers_cannot_be_changed_by_one_caller():
    receiver = webhooklite.Receiver(None)
    receiver.on("*", lambda e: None)
    first = receiver.handle("POST", "/", {}, b'{"event":"x"}')
    with pytest.raises(AttributeError):
        first.headers.append(("Set-Cookie", "session=alice"))
    second = receiver.handle("POST", "/", {}, b'{"event":"y"}')
    assert ("Set-Cookie", "session=alice") not in second.headers


@pytest.mark.parametrize("value", ["²", "1²", " ", "-1"])
def test_odd_digits_in_unsigned_timestamp_and_wsgi_length(value):
    import io

    receiver = webhooklite.Receiver(None)
    receiver.on("*", lambda e: None)
    assert receiver.handle("POST", "/", {"webhook-timestamp": value}, b'{"event":"x"}').status == 200
    answers = []
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "CONTENT_LENGTH": value, "wsgi.input": io.BytesIO(b"{}")}
    receiver(environ, lambda status, headers: answers.append(status))
    assert answers[0].startswith("400")


def test_keys_that_are_not_strings_are_refused_at_any_depth():
    # json would write {1: "refund", "1": "charge"} as two "1" keys, which parsers read differently.
    for data in ({1: "refund", "1": "charge"}, {"items": [{"sku": "a", 2: "b"}]}, {"x": {(1, 2): 3}}, {"n": {None: 1}}):
        with pytest.raises(TypeError, match="keys are strings"):
            encode_event("order.created", data)
        with pytest.raises(TypeError, match="keys are strings"):
            encode_json(data)
    assert encode_json({"a": [{"b": {"c": 1}}]}) == b'{"a":[{"b":{"c":1}}]}'


def test_json_constants_python_accepts_are_refused():
    for text in (b'{"a": NaN}', b'{"a": Infinity}', b'[-Infinity]'):
        with pytest.raises(PayloadError, match="not a JSON value"):
            decode_body(text)
