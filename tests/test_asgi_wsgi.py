"""receiver.asgi and the WSGI app beyond the shared status table: what only these transports can get wrong.

The status table (test_status_table.py) already drives every answer through
both; here: ASGI lifespan/websocket scopes, body streaming and disconnects,
handlers off the event loop, mount paths; WSGI bodies without Content-Length.
"""
import asyncio
import io
import json
import socket
import subprocess
import sys
import threading
import time
import wsgiref.util
import wsgiref.validate
from pathlib import Path

import pytest

import webhooklite
from conftest import SECRET, signed
from transports import asgi_scope, run_asgi, split, wsgi_server
from webhooklite.asgi import ASGIApp

ROOT = Path(__file__).resolve().parent.parent


def raw(headers):
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def recorder(**kwargs):
    runs = []
    receiver = webhooklite.Receiver(SECRET, **kwargs)
    receiver.on("payment.*", lambda event: runs.append(event.id))
    return receiver, runs


# -- ASGI -----------------------------------------------------------------------


def test_asgi_is_one_app_per_receiver_and_costs_nothing_until_used():
    receiver = webhooklite.Receiver(SECRET)
    assert isinstance(receiver.asgi, ASGIApp)
    assert receiver.asgi is receiver.asgi
    assert receiver.asgi.receiver is receiver
    code = "import sys, webhooklite; r = webhooklite.Receiver('whsec_' + 'A' * 32); assert 'asyncio' not in sys.modules; r.asgi; assert 'asyncio' in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


def test_asgi_lifespan_completes_startup_and_shutdown():
    app = webhooklite.Receiver(SECRET).asgi
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = []

    async def receive():
        return inbox.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(asyncio.wait_for(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send), 5))
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    assert inbox == []


def test_asgi_refuses_websockets_and_unknown_scopes():
    app = webhooklite.Receiver(SECRET).asgi
    sent = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    asyncio.run(asyncio.wait_for(app({"type": "websocket", "path": "/"}, receive, send), 5))
    assert [m["type"] for m in sent] == ["websocket.close"]
    with pytest.raises(ValueError, match="does not serve 'telepathy'"):
        asyncio.run(app({"type": "telepathy"}, receive, send))


def test_asgi_answers_413_from_content_length_without_reading_the_body():
    receiver, runs = recorder(max_body=100)
    headers, body = signed(data={"item": "x" * 500})
    ex = run_asgi(receiver.asgi, asgi_scope("POST", "/", raw(dict(headers, **{"Content-Length": str(len(body))}))), split(body, 100))
    assert ex.answer()[0] == 413
    assert ex.receive_calls == 0 and runs == []


def test_asgi_stops_reading_a_body_without_length_once_it_is_over_max_body():
    receiver, runs = recorder(max_body=1000)
    headers, body = signed(data={"item": "x" * 20_000})  # e.g. chunked: the server gives no Content-Length
    ex = run_asgi(receiver.asgi, asgi_scope("POST", "/", raw(headers)), split(body, 100))
    status, _, answer = ex.answer()
    assert status == 413 and b"1000-byte limit" in answer
    assert 1000 < ex.received <= 1100, "read on past the limit"
    assert runs == []
    # The same body within the limit, without Content-Length, is handled.
    headers, body = signed()
    ex = run_asgi(receiver.asgi, asgi_scope("POST", "/", raw(headers)), split(body, 7))
    assert ex.answer()[0] == 200 and len(runs) == 1


def test_asgi_bad_or_short_content_length_is_400():
    receiver, runs = recorder()
    headers, body = signed()
    bad = run_asgi(receiver.asgi, asgi_scope("POST", "/", raw(dict(headers, **{"Content-Length": "12x"}))), [body])
    assert bad.answer()[0] == 400 and bad.receive_calls == 0
    short = run_asgi(
        receiver.asgi, asgi_scope("POST", "/", raw(dict(headers, **{"Content-Length": str(len(body) + 5)}))), [body]
    )
    status, _, answer = short.answer()
    assert status == 400 and b"Content-Length" in answer
    assert runs == []


def test_asgi_client_gone_mid_body_gets_no_answer_and_runs_nothing():
    receiver, runs = recorder()
    headers, body = signed()
    ex = run_asgi(receiver.asgi, asgi_scope("POST", "/", raw(headers)), split(body, 10), disconnect_after=2)
    assert ex.sent == [] and runs == []


def test_asgi_handlers_run_off_the_event_loop_and_in_parallel():
    receiver = webhooklite.Receiver(SECRET)
    threads = []
    release = threading.Event()

    @receiver.on("payment.completed")
    def slow(event):
        threads.append(threading.get_ident())
        # Only the event loop sets this: if handlers ran on the loop, this would wait forever.
        assert release.wait(2), "the event loop was blocked by a handler"
        time.sleep(0.2)

    async def main():
        loop_thread = threading.get_ident()

        async def one():
            headers, body = signed()
            from transports import ASGICall

            ex = ASGICall(split(body))
            await receiver.asgi(asgi_scope("POST", "/", raw(headers)), ex.receive, ex.send)
            return ex.answer()[0]

        tasks = [asyncio.ensure_future(one()) for _ in range(4)]
        await asyncio.sleep(0.05)
        release.set()  # runs only because the loop is free while the handlers wait
        started = time.monotonic()
        statuses = await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return loop_thread, statuses, time.monotonic() - started

    loop_thread, statuses, elapsed = asyncio.run(main())
    assert statuses == [200] * 4
    assert len(threads) == 4 and loop_thread not in threads
    assert elapsed < 0.6, f"4 handlers of 0.2 s took {elapsed:.2f} s: not run in parallel"


def test_asgi_handlers_see_the_request_task_context():
    import contextvars

    request_id = contextvars.ContextVar("request_id", default=None)
    receiver = webhooklite.Receiver(SECRET)
    seen = []
    receiver.on("payment.completed", lambda event: seen.append(request_id.get()))

    async def main():
        request_id.set("req-42")  # e.g. set by a tracing middleware
        headers, body = signed()
        from transports import ASGICall

        ex = ASGICall([body])
        await receiver.asgi(asgi_scope("POST", "/", raw(headers)), ex.receive, ex.send)
        return ex.answer()[0]

    assert asyncio.run(asyncio.wait_for(main(), 5)) == 200
    assert seen == ["req-42"]


@pytest.mark.parametrize(
    "root_path,path,status",
    [
        ("", "/hooks/stripe", 200),  # served at the root: uvicorn myapp:app
        ("/hooks", "/hooks/stripe", 200),  # mounted: path includes root_path (ASGI spec, Starlette >= 0.33)
        ("/hooks", "/stripe", 200),  # mounted, older servers: root_path stripped from path
        ("/hooks", "/hooks/github", 404),
        ("", "/stripe", 404),
    ],
)
def test_asgi_path_is_the_whole_path_under_a_mount(root_path, path, status):
    receiver, runs = recorder(path="/hooks/stripe")
    headers, body = signed()
    ex = run_asgi(receiver.asgi, asgi_scope("POST", path + "?x=1", raw(headers), root_path=root_path), [body])
    assert ex.answer()[0] == status
    assert len(runs) == (status == 200)


def test_asgi_repeated_headers_are_joined_and_form_bodies_work():
    receiver = webhooklite.Receiver("It's a Secret to Everybody", scheme="github")
    seen = []
    receiver.on("issues.opened", lambda event: seen.append((event["issue"]["title"], event.headers["x-note"])))
    payload = json.dumps({"action": "opened", "issue": {"title": "Hi"}})
    body = ("payload=" + __import__("urllib.parse").parse.quote(payload)).encode()
    headers = webhooklite.sign(body, "It's a Secret to Everybody", scheme="github", msg_id="d-1")
    pairs = raw(headers) + [
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"x-github-event", b"issues"),
        (b"X-Note", b"a"),
        (b"x-note", b"b"),
    ]
    assert run_asgi(receiver.asgi, asgi_scope("POST", "/", pairs), [body]).answer()[0] == 200
    assert seen == [("Hi", "a, b")]


# -- WSGI -----------------------------------------------------------------------


def wsgi_call(app, environ_extra, body):
    """Call a WSGI app directly, under wsgiref.validate, as a server would."""
    environ = {"REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "", "wsgi.input": io.BytesIO(body)}
    environ.update(environ_extra)
    wsgiref.util.setup_testing_defaults(environ)
    got = {}

    def start_response(status, headers, exc_info=None):
        got["status"], got["headers"] = status, headers
        return lambda data: None

    result = wsgiref.validate.validator(app)(environ, start_response)
    try:
        answer = b"".join(result)
    finally:
        result.close()
    return int(got["status"].split()[0]), answer


def test_wsgi_body_without_length_from_a_server_that_ends_it_gunicorn_style():
    receiver, runs = recorder(max_body=1000)
    headers, body = signed()
    http = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items() if k != "Content-Type"}
    terminated = dict(http, CONTENT_TYPE="application/json", HTTP_TRANSFER_ENCODING="chunked")
    terminated["wsgi.input_terminated"] = True
    assert wsgi_call(receiver, terminated, body)[0] == 200 and len(runs) == 1
    big_headers, big = signed(data={"item": "x" * 5000})
    http = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in big_headers.items() if k != "Content-Type"}
    status, answer = wsgi_call(receiver, dict(http, **{"wsgi.input_terminated": True}), big)
    assert status == 413 and len(runs) == 1


def test_wsgi_chunked_body_under_wsgiref_is_411_at_once_not_a_hang():
    receiver, runs = recorder()
    headers, body = signed()
    with wsgi_server(receiver) as server:
        with socket.create_connection(server.server_address, timeout=5) as s:
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
            started = time.monotonic()
            s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n" + head.encode() + b"\r\n" + chunked)
            answer = b""
            while True:
                data = s.recv(65536)
                if not data:
                    break
                answer += data
    assert answer.startswith(b"HTTP/1.0 411 "), answer[:80]
    assert b"Content-Length" in answer.split(b"\r\n\r\n", 1)[1]
    assert time.monotonic() - started < 2 and runs == []


def test_sender_to_a_receiver_under_wsgiref_every_delivery_ok():
    # wsgiref answers HTTP/1.0 and writes the head and the body separately, then closes:
    # the Sender must read the body after http.client has closed the connection.
    receiver, runs = recorder()
    with wsgi_server(wsgiref.validate.validator(receiver)) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        with webhooklite.Sender(url, SECRET, timeout=5, retry=webhooklite.Retry(attempts=1)) as sender:
            deliveries = [sender.send("payment.completed", {"n": n}) for n in range(10)]
    assert [(d.status, d.error) for d in deliveries] == [(200, None)] * 10
    assert all(d.response_body == b'{"status":"ok"}' for d in deliveries)
    assert len(runs) == 10
