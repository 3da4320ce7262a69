"""What one request costs webhooklite's own code, with no thread ever sleeping: the part of a round trip
that is ours, beside the part every server pays (waking on the socket, the client's turn).

    python benchmarks/request_cost.py [--count 20000] [--rounds 5] [--uvloop]

Each case handles --count requests (the benchmark's signed body, each with its own webhook-id) in one
thread, back to back, on a warm cache; rounds are interleaved and the table shows the median µs per
request. The cases:

- ``serve()``'s request path: ``WebhookServer._one_request`` over a socketpair. The client end writes a
  request, the server end reads, verifies, handles and answers it, the client end reads the answer:
  everything a connection's thread does for a request, except the wait for it.
- the socketpair alone: the same writes and reads with no HTTP and no receiver (the floor of the above).
- ``Receiver.process``: signature, JSON, event, dedupe, handler, counting; and its signature check alone.
- ``receiver.asgi`` on an asyncio loop, called as a server calls it (scope, receive, send), with an
  ``async def`` handler (on the loop) and with a sync handler (one hop to a worker thread and back),
  one request at a time, and 32 at once (started together, as a loop serving many connections has them).

``--uvloop`` runs the ASGI cases on uvloop (uvicorn's loop in bench.py) instead of asyncio's own. The table also
shows the process's context switches per request (``getrusage``: voluntary + involuntary), which for a sync
handler count what its hop to a thread and back costs the scheduler. Run it pinned to one core (``taskset -c 0``)
to see the hop as a loaded server's one core has it.

Compare with what benchmarks/bench.py measures on a real round trip at one connection: the server's CPU
per request there, minus the first row here, is what sleeping in ``recv`` and being woken costs.
"""
import argparse
import asyncio
import io
import os
import resource
import socket
import statistics
import sys
import time
from typing import Callable, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("BENCH_WEBHOOKLITE_PATH") or os.path.dirname(HERE))
sys.path.insert(0, HERE)

import webhooklite  # noqa: E402
from bench import BODY_FMT, SECRET  # noqa: E402  (the same secret and body as the round-trip benchmark)
from webhooklite.headers import Headers  # noqa: E402
from webhooklite import server as server_module  # noqa: E402
from webhooklite.server import WebhookServer, _Answer  # noqa: E402
from webhooklite.signing import Signer  # noqa: E402


def requests(count: int, tag: str) -> List[Dict[str, str]]:
    signer = Signer(SECRET)
    out = []
    for i in range(count):
        body = BODY_FMT % i
        h = {"host": "127.0.0.1:8000", "user-agent": "wrk", "content-type": "application/json",
             "content-length": str(len(body))}
        h.update({k.lower(): v for k, v in signer.sign(body.encode(), f"msg_{tag}{i:08d}").items()})
        out.append({"body": body, **h})
    return out


def receiver(handler: Callable) -> webhooklite.Receiver:
    r = webhooklite.Receiver(SECRET)
    r.on("payment.completed", handler)
    return r


def raw_request(req: Dict[str, str]) -> bytes:
    head = "POST / HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in req.items() if k != "body") + "\r\n"
    return (head + req["body"]).encode()


def case_serve(reqs: List[Dict[str, str]]) -> float:
    server = WebhookServer(receiver(lambda event: None), port=0)
    client, conn = socket.socketpair()
    reads = getattr(server_module, "_Reads", None)  # the server's own reader (a checkout before it: makefile)
    rfile = io.BufferedReader(reads(conn), 65536) if reads else conn.makefile("rb", buffering=65536)
    state, pending, addr = [0.0, 0.0], _Answer(), ("127.0.0.1", 0)
    wire = [raw_request(r) for r in reqs]
    try:
        t = time.perf_counter()
        for data in wire:
            client.sendall(data)
            server._one_request(conn, rfile, addr, state, pending)
            client.recv(65536)
        return time.perf_counter() - t
    finally:
        rfile.close()
        conn.close()
        client.close()
        server.socket.close()


def case_socketpair(reqs: List[Dict[str, str]]) -> float:
    client, conn = socket.socketpair()
    wire = [raw_request(r) for r in reqs]
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    try:
        t = time.perf_counter()
        for data in wire:
            client.sendall(data)
            conn.recv(65536)
            conn.sendall(answer)
            client.recv(65536)
        return time.perf_counter() - t
    finally:
        conn.close()
        client.close()


def parsed(reqs: List[Dict[str, str]]) -> List[tuple]:
    return [(Headers._from_lower({k: v for k, v in r.items() if k != "body"}), r["body"].encode()) for r in reqs]


def case_process(reqs: List[Dict[str, str]]) -> float:
    r, items = receiver(lambda event: None), parsed(reqs)
    t = time.perf_counter()
    for h, body in items:
        r.process(h, body)
    return time.perf_counter() - t


def case_check(reqs: List[Dict[str, str]]) -> float:
    signer, items = Signer(SECRET), parsed(reqs)
    t = time.perf_counter()
    for h, body in items:
        signer.check(body, h)
    return time.perf_counter() - t


def asgi_case(sync: bool, concurrent: int = 1) -> Callable[[List[Dict[str, str]]], float]:
    def case(reqs: List[Dict[str, str]]) -> float:
        if sync:
            app = receiver(lambda event: None).asgi
        else:
            async def handled(event) -> None:
                pass

            app = receiver(handled).asgi
        calls = []
        for req in reqs:
            headers = [(k.encode(), v.encode()) for k, v in req.items() if k != "body"]
            scope = {"type": "http", "method": "POST", "path": "/", "root_path": "", "query_string": b"",
                     "headers": headers}
            message = {"type": "http.request", "body": req["body"].encode(), "more_body": False}
            calls.append((scope, message))

        async def run() -> float:
            async def send(message) -> None:
                pass

            def one(scope, message):
                async def receive():
                    return message

                return app(scope, receive, send)

            t = time.perf_counter()
            if concurrent == 1:
                for scope, message in calls:
                    await one(scope, message)
            else:  # in batches started together, as a server's loop has many requests at once
                for i in range(0, len(calls), concurrent):
                    await asyncio.gather(*(one(scope, message) for scope, message in calls[i:i + concurrent]))
            return time.perf_counter() - t

        return RUN[0](run())

    return case


#: How the ASGI cases run their loop: asyncio.run, or uvloop's (--uvloop).
RUN = [asyncio.run]


CASES = [
    ("`serve()`'s request path over a socketpair (`_one_request`: read, verify, handle, answer)", case_serve),
    ("the socketpair alone (write, read, answer, read)", case_socketpair),
    ("`Receiver.process` (signature, JSON, event, dedupe, handler)", case_process),
    ("`Signer.check` alone (the HMAC signature)", case_check),
    ("`receiver.asgi`, `async def` handler (on the loop)", asgi_case(sync=False)),
    ("`receiver.asgi`, sync handler (a hop to a worker thread and back)", asgi_case(sync=True)),
    ("`receiver.asgi`, sync handler, 32 requests at once", asgi_case(sync=True, concurrent=32)),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=20000, help="requests per case and round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--uvloop", action="store_true", help="run the ASGI cases on uvloop")
    args = p.parse_args()
    if args.uvloop:
        import uvloop

        RUN[0] = uvloop.run
    times: Dict[str, List[float]] = {name: [] for name, _ in CASES}
    switches: Dict[str, List[float]] = {name: [] for name, _ in CASES}
    for rnd in range(args.rounds):
        reqs = requests(args.count, f"r{rnd}x")  # fresh ids: no case sees a duplicate
        for name, case in CASES[rnd % len(CASES):] + CASES[:rnd % len(CASES)]:
            before = resource.getrusage(resource.RUSAGE_SELF)
            times[name].append(case(reqs) / args.count * 1e6)
            after = resource.getrusage(resource.RUSAGE_SELF)
            switches[name].append((after.ru_nvcsw + after.ru_nivcsw - before.ru_nvcsw - before.ru_nivcsw) / args.count)
    loop = "uvloop" if args.uvloop else "asyncio"
    print(f"Python {sys.version.split()[0]}, {args.count} requests per case, median of {args.rounds} rounds, "
          f"ASGI on {loop}\n")
    print("| case | µs per request | rounds | context switches per request |")
    print("| --- | ---: | ---: | ---: |")
    for name, _ in CASES:
        xs = times[name]
        print(f"| {name} | {statistics.median(xs):.1f} | {min(xs):.1f}-{max(xs):.1f} | "
              f"{statistics.median(switches[name]):.2f} |")


if __name__ == "__main__":
    main()
