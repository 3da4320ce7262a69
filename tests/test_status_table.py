"""Every status in the table of docs/receiving.md, over every transport; the receiver keeps serving after each."""
import time

import pytest

import webhooklite
from conftest import SECRET, signed

MAX_BODY = 2048


def make_receiver(runs):
    receiver = webhooklite.Receiver(SECRET, path="/hooks", max_body=MAX_BODY)

    @receiver.on("payment.*")
    def paid(event):
        runs.append(event.id)

    @receiver.on("boom")
    def boom(event):
        raise RuntimeError("handler bug")

    return receiver


def _valid():
    return ("POST", "/hooks") + signed()


def _stale():
    return ("POST", "/hooks") + signed(timestamp=int(time.time()) - 3600)


def _future():
    return ("POST", "/hooks") + signed(timestamp=int(time.time()) + 3600)


def _wrong_secret():
    return ("POST", "/hooks") + signed(secret=webhooklite.generate_secret())


def _unsigned():
    return "POST", "/hooks", {"Content-Type": "application/json"}, b'{"event":"payment.completed"}'


def _tampered():
    headers, body = signed()
    return "POST", "/hooks", headers, body.replace(b"Blue", b"Red!")


def _malformed_json():
    return ("POST", "/hooks") + signed(body=b'{"event": "payment.completed", ')


def _bad_utf8():
    return ("POST", "/hooks") + signed(body=b'{"event": "payment.completed", "item": "\xff\xfe"}')


def _oversized():
    return ("POST", "/hooks") + signed(data={"item": "x" * MAX_BODY})


def _exactly_max():
    prefix = b'{"event":"payment.completed","pad":"'
    body = prefix + b"x" * (MAX_BODY - len(prefix) - 2) + b'"}'
    assert len(body) == MAX_BODY
    return ("POST", "/hooks") + signed(body=body)


def _wrong_path():
    return ("POST", "/other") + signed()


def _query_ignored():
    return ("POST", "/hooks?source=store") + signed()


def _get():
    return "GET", "/hooks", {}, b""


def _put():
    return ("PUT", "/hooks") + signed()


def _handler_raises():
    return ("POST", "/hooks") + signed("boom")


def _no_handler():
    return ("POST", "/hooks") + signed("order.shipped")


def _nan():
    return ("POST", "/hooks") + signed(body=b'{"event": "payment.completed", "amount": NaN}')


def _infinity():
    return ("POST", "/hooks") + signed(body=b'{"event": "payment.completed", "amount": -Infinity}')


def _not_an_object():
    return ("POST", "/hooks") + signed(body=b"[1, 2, 3]")


# (name, request builder, expected status, JSON field expected in the answer)
CASES = [
    ("handled", _valid, 200, ("status", "ok")),
    ("query string ignored", _query_ignored, 200, ("status", "ok")),
    ("body exactly max_body", _exactly_max, 200, ("status", "ok")),
    ("no handler matched", _no_handler, 200, ("status", "ignored")),
    ("JSON not an object", _not_an_object, 200, ("status", "ignored")),
    ("malformed JSON", _malformed_json, 400, None),
    ("invalid UTF-8", _bad_utf8, 400, None),
    ("NaN is not JSON", _nan, 400, None),
    ("-Infinity is not JSON", _infinity, 400, None),
    ("unsigned", _unsigned, 401, ("error", "missing webhook-signature header")),
    ("wrong secret", _wrong_secret, 401, ("error", "signature does not match")),
    ("tampered body", _tampered, 401, ("error", "signature does not match")),
    ("stale timestamp", _stale, 401, None),
    ("future timestamp", _future, 401, None),
    ("other path", _wrong_path, 404, None),
    ("GET", _get, 405, None),
    ("PUT", _put, 405, None),
    ("over max_body", _oversized, 413, None),
    ("handler raised", _handler_raises, 500, None),
]


@pytest.mark.parametrize("name,build,status,field", CASES, ids=[c[0] for c in CASES])
def test_status(transport, name, build, status, field):
    runs = []
    receiver = make_receiver(runs)
    with transport(receiver) as call:
        method, path, headers, body = build()
        got_status, got_headers, got_body = call(method, path, headers, body)
        assert got_status == status, got_body
        assert got_headers.get("content-type") == "application/json"
        answer = __import__("json").loads(got_body)
        if status >= 400:
            assert isinstance(answer.get("error"), str) and answer["error"]
            assert "whsec_" not in answer["error"] and SECRET[6:] not in got_body.decode()
        if field:
            assert answer[field[0]] == field[1]
        if status == 405:
            assert got_headers.get("allow") == "POST"
        # The handler ran only for accepted requests.
        assert bool(runs) == (status == 200 and field == ("status", "ok"))
        # Whatever came before, the next valid request is handled.
        ok = call(*_valid())
        assert ok[0] == 200 and b'"ok"' in ok[2]


def test_head_is_answered_as_get_would_be_without_a_body(transport):
    """RFC 9110 9.3.2: the same status and headers as GET (Content-Length included), no body."""
    runs = []
    with transport(make_receiver(runs)) as call:
        get_status, get_headers, get_body = call("GET", "/hooks", {}, b"")
        for path, status in (("/hooks", 405), ("/other", 404)):
            got_status, got_headers, got_body = call("HEAD", path, {}, b"")
            assert got_status == status and got_body == b""
            assert got_headers.get("content-type") == "application/json"
        assert got_headers.get("allow") is None and get_headers.get("allow") == "POST"
        head_405 = call("HEAD", "/hooks", {}, b"")
        assert head_405[1]["content-length"] == get_headers["content-length"] == str(len(get_body))
        assert call(*_valid())[0] == 200 and len(runs) == 1


def test_duplicate_is_answered_without_running_handlers_again(transport):
    runs = []
    with transport(make_receiver(runs)) as call:
        headers, body = signed(msg_id="msg_dup1")
        first = call("POST", "/hooks", headers, body)
        second = call("POST", "/hooks", *signed(msg_id="msg_dup1"))  # a retry: fresh timestamp, same id
        assert first[0] == second[0] == 200
        assert b'"duplicate"' in second[2]
        assert runs == ["msg_dup1"]


def test_failed_handler_runs_again_on_retry(transport):
    calls = []
    receiver = webhooklite.Receiver(SECRET)

    @receiver.on("payment.completed")
    def flaky(event):
        calls.append(event.id)
        if len(calls) == 1:
            raise RuntimeError("database down")

    with transport(receiver) as call:
        assert call("POST", "/", *signed(msg_id="msg_retry"))[0] == 500
        assert call("POST", "/", *signed(msg_id="msg_retry"))[0] == 200
        assert call("POST", "/", *signed(msg_id="msg_retry"))[0] == 200
    assert calls == ["msg_retry", "msg_retry"]
