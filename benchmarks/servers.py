"""The receiver contenders, one per process: ``python servers.py KIND PORT``.

KIND is one of:
  webhooklite    webhooklite Receiver.serve(): its own server, verification on, one handler
  inbox          the same with a durable Inbox on a sqlite file (synchronous=FULL): 202 once stored, the
                 handler run after by the inbox's workers in the same process
  stdlib-verify  a hand-written http.server handler (ThreadingHTTPServer, HTTP/1.1 keep-alive,
                 request_queue_size 128): the same HMAC check + timestamp window + json.loads
  stdlib-bare    the same handler without verification (json.loads only): the stdlib limit
  fastapi        FastAPI + standardwebhooks (fastapi_app.py) on uvicorn, 1 worker
  fastapi-thread the same route with the application's work in a thread (run_in_threadpool)
  asgi           webhooklite's receiver.asgi (verification on, the same one sync handler) on the same uvicorn
  asgi-async     the same with the handler an ``async def`` (awaited on the loop, like FastAPI's route)
Both uvicorn contenders use uvloop and httptools when they are installed (the asyncio loop and
h11 otherwise: ``uvicorn_options()`` says which), access log off.   canned         not a contender: recv() and a canned 200 per request, no parsing (the ceiling)
The Flask + standardwebhooks contender runs under gunicorn: see flask_app.py.

The secret comes from BENCH_SECRET. On SIGTERM each server stops and, when BENCH_REPORT
names a file, writes how many events its handler saw (and, for webhooklite, how many
ids its dedupe store holds) there; with BENCH_REPORT_EVERY=<seconds> it also rewrites
the file while serving (the memory run samples it).
"""
import base64
import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time

SECRET = os.environ["BENCH_SECRET"]
KEY = base64.b64decode(SECRET[len("whsec_"):])
REPORT = os.environ.get("BENCH_REPORT")
seen = [0]


def write_report(extra: dict) -> None:
    if REPORT:
        tmp = REPORT + ".tmp"
        with open(tmp, "w") as f:
            json.dump(dict(handled=seen[0], **extra), f)
        os.replace(tmp, REPORT)


def run_webhooklite(port: int, inbox: bool = False) -> None:
    import tempfile

    import webhooklite

    folder = tempfile.mkdtemp(prefix="wl-bench-inbox-") if inbox else None
    receiver = webhooklite.Receiver(SECRET, inbox=webhooklite.Inbox(os.path.join(folder, "inbox.db")) if folder else None)

    @receiver.on("payment.completed")
    def handled(event) -> None:
        seen[0] += 1  # one handler, as an application would register

    def extra() -> dict:
        if folder:
            return {"stored": receiver.inbox.stats()}
        return {"store_ids": len(receiver.store)}

    every = float(os.environ.get("BENCH_REPORT_EVERY") or 0)
    if every:
        def loop() -> None:
            while True:
                time.sleep(every)
                write_report(extra())

        threading.Thread(target=loop, daemon=True).start()
    receiver.serve("127.0.0.1", port)  # returns on SIGTERM
    write_report(extra())
    if folder:
        import shutil

        receiver.inbox.close()
        shutil.rmtree(folder, ignore_errors=True)


def uvicorn_options() -> dict:
    """uvicorn's fastest loop and HTTP parser that are installed (the same for every uvicorn contender)."""
    import importlib.util

    have = lambda name: importlib.util.find_spec(name) is not None  # noqa: E731
    return {
        "loop": "uvloop" if have("uvloop") else "asyncio",
        "http": "httptools" if have("httptools") else "h11",
    }


def run_uvicorn(port: int, app, count) -> None:
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=port, workers=1, log_level="warning",
                            access_log=False, lifespan="off", timeout_graceful_shutdown=2, **uvicorn_options())
    # uvicorn shuts down on SIGTERM, restores the handler it found and raises the signal again:
    # a no-op handler lets run() return, so the report below gets written.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.Server(config).run()
    seen[0] = count()
    write_report({})


def run_fastapi(port: int, thread: bool = False) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import fastapi_app

    run_uvicorn(port, fastapi_app.app_thread if thread else fastapi_app.app, lambda: fastapi_app.seen[0])


def run_asgi(port: int, async_handler: bool) -> None:
    import webhooklite

    receiver = webhooklite.Receiver(SECRET)
    if async_handler:
        @receiver.on("payment.completed")
        async def handled_async(event) -> None:
            seen[0] += 1  # awaited on uvicorn's loop, as FastAPI's async def route runs

    else:
        @receiver.on("payment.completed")
        def handled(event) -> None:
            seen[0] += 1  # the same one sync handler as the webhooklite contender: run in a thread

    run_uvicorn(port, receiver.asgi, lambda: seen[0])


def run_stdlib(port: int, verify: bool) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive
        # What a careful hand-written handler does: without these two, each answer goes out in
        # two writes and Nagle + delayed ACK stall every keep-alive request by ~40 ms.
        disable_nagle_algorithm = True  # TCP_NODELAY
        wbufsize = 65536  # headers and body leave in one write (handle_one_request flushes)

        def answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if verify:
                msg_id = self.headers.get("webhook-id")
                ts = self.headers.get("webhook-timestamp")
                sigs = self.headers.get("webhook-signature")
                if not (msg_id and ts and sigs and ts.isdigit()) or abs(int(ts) - time.time()) > 300:
                    return self.answer(401, b'{"error":"bad signature"}')
                expected = base64.b64encode(
                    hmac.new(KEY, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
                )
                if not any(
                    hmac.compare_digest(expected, s.partition(",")[2].encode()) for s in sigs.split()
                ):
                    return self.answer(401, b'{"error":"bad signature"}')
            try:
                data = json.loads(body)
            except ValueError:
                return self.answer(400, b'{"error":"bad json"}')
            if data.get("event") == "payment.completed":
                seen[0] += 1
            self.answer(200, b'{"status":"ok"}')

        def log_message(self, *args) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128
        daemon_threads = True

        def handle_error(self, request, client_address) -> None:
            pass  # wrk resets its connections at the end of a run

    server = Server(("127.0.0.1", port), Handler)

    def stop(signum, frame) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()
    server.server_close()
    write_report({})


def run_canned(port: int) -> None:
    """No HTTP at all: a thread per connection, one recv() taken as one request, a canned 200.

    Not a contender: the ceiling of any Python thread-per-connection server on this machine
    (what is left of webhooklite's time per request beyond it is parsing and the receiver)."""
    import socket

    answer = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{"status":"ok"}'
    listener = socket.create_server(("127.0.0.1", port), backlog=128)
    listener.settimeout(0.5)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())

    def serve(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            try:
                while conn.recv(65536):
                    seen[0] += 1
                    conn.sendall(answer)
            except OSError:
                pass

    while not stopping.is_set():
        try:
            conn, _ = listener.accept()
        except (socket.timeout, InterruptedError):
            continue
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    write_report({})


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "webhooklite":
        run_webhooklite(port)
    elif kind == "inbox":
        run_webhooklite(port, inbox=True)
    elif kind in ("fastapi", "fastapi-thread"):
        run_fastapi(port, thread=kind == "fastapi-thread")
    elif kind == "canned":
        run_canned(port)
    elif kind in ("asgi", "asgi-async"):
        run_asgi(port, async_handler=kind == "asgi-async")
    elif kind in ("stdlib-verify", "stdlib-bare"):
        run_stdlib(port, verify=kind == "stdlib-verify")
    else:
        sys.exit(f"unknown kind {kind!r}")
