"""Outbox throughput, in one run: enqueue (single and batched) and delivery against the direct Sender.

    python3 benchmarks/bench_outbox.py [--reps 5] [--messages 2000]

The sink is a minimal HTTP/1.1 server in a process of its own (asyncio,
keep-alive, answers 200 at once), the same for both delivery paths, so the
numbers measure the sending side. Each repetition runs every case once, in
turn (interleaved), on a fresh sqlite3 file; the table shows medians.

Targets (issue 3): batched enqueue >= 5,000 messages/s; delivery through the
outbox >= 0.8x the direct Sender's rate (sequential ``Sender.send``).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import webhooklite  # noqa: E402

SINK = r"""
import asyncio, sys

async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=128)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

asyncio.run(main())
"""

DATA = {"order_id": "ABC123", "customer": "Jane D.", "item": "Blue T-Shirt", "amount": 25.0}
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def fresh_outbox(tmp, url, **options):
    path = os.path.join(tmp, f"bench-{time.perf_counter_ns()}.db")
    outbox = webhooklite.Outbox(path, **options)
    outbox.add_endpoint(url, secret=SECRET, events=["*"])
    return outbox


def enqueue_single(tmp, url, n):
    with fresh_outbox(tmp, url) as outbox:
        t = time.perf_counter()
        for _ in range(n):
            outbox.send("payment.completed", DATA)
        return n / (time.perf_counter() - t)


def enqueue_batched(tmp, url, n):
    with fresh_outbox(tmp, url) as outbox:
        items = [("payment.completed", DATA)] * n
        t = time.perf_counter()
        outbox.send_many(items)
        return n / (time.perf_counter() - t)


def direct(url, n):
    with webhooklite.Sender(url, SECRET) as sender:
        sender.send("payment.completed", DATA)  # connect outside the clock, as the outbox's warm-up
        t = time.perf_counter()
        for _ in range(n):
            assert sender.send("payment.completed", DATA).ok
        return n / (time.perf_counter() - t)


def through_outbox(tmp, url, n, workers):
    with fresh_outbox(tmp, url, workers=workers) as outbox:
        outbox.send_many([("payment.completed", DATA)] * n)
        t = time.perf_counter()
        outbox.start()
        assert outbox.drain(timeout=120)
        rate = n / (time.perf_counter() - t)
        outbox.stop()
        assert outbox.stats()[1]["delivered"] == n
        return rate


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--messages", type=int, default=2000, help="messages per delivery run")
    ap.add_argument("--single", type=int, default=500, help="messages per single-send enqueue run")
    ap.add_argument("--batch", type=int, default=10000, help="messages per batched enqueue run")
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()

    sink = subprocess.Popen([sys.executable, "-c", SINK], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{int(sink.stdout.readline())}/hooks"
        results = {k: [] for k in ("single", "batched", "direct", "outbox")}
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(args.reps):
                results["single"].append(enqueue_single(tmp, url, args.single))
                results["batched"].append(enqueue_batched(tmp, url, args.batch))
                results["direct"].append(direct(url, args.messages))
                results["outbox"].append(through_outbox(tmp, url, args.messages, args.workers))
                print(f"rep {rep + 1}/{args.reps}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in results.items()),
                      file=sys.stderr)
    finally:
        sink.stdin.close()
        sink.wait(5)

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"python {sys.version.split()[0]}, sqlite {__import__('sqlite3').sqlite_version}, "
          f"{os.cpu_count()} CPUs; medians of {args.reps} interleaved repetitions\n")
    print("| case | messages/s (median) | min - max | vs target |")
    print("| --- | ---: | ---: | --- |")
    rows = [
        ("enqueue, one send() per message (each committed, synchronous=FULL)", "single", ""),
        (f"enqueue, send_many() of {args.batch:,}", "batched", f"target >= 5,000: {'met' if med['batched'] >= 5000 else 'MISSED'}"),
        (f"deliver, direct Sender.send(), sequential", "direct", "baseline"),
        (f"deliver, through the outbox (workers={args.workers})", "outbox",
         f"{med['outbox'] / med['direct']:.2f}x direct; target >= 0.8x: {'met' if med['outbox'] >= 0.8 * med['direct'] else 'MISSED'}"),
    ]
    for label, key, note in rows:
        print(f"| {label} | {med[key]:,.0f} | {min(results[key]):,.0f} - {max(results[key]):,.0f} | {note} |")
    pairs = [o / d for o, d in zip(results["outbox"], results["direct"])]
    print(f"\noutbox / direct within each repetition: {', '.join(f'{r:.2f}' for r in pairs)} "
          f"(median {statistics.median(pairs):.2f}x)")


if __name__ == "__main__":
    main()
