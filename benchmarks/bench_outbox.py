"""The outbox, measured: enqueue and delivery on sqlite and PostgreSQL, against Celery + Redis + requests.

    python3 benchmarks/bench_outbox.py --postgres postgresql://postgres@127.0.0.1:55432/postgres [--reps 3]

Run it with the benchmark venv's python (``bash benchmarks/setup.sh`` makes it; Celery, redis,
requests and psycopg are in requirements.txt), and Debian's ``redis-server`` installed: the script
starts its own Redis on 127.0.0.1 and a free port, and stops it.

Every case runs once per repetition, interleaved; the table shows medians.

- **Enqueue**: ``send()`` per message (each committed), ``send_many()`` of 10,000 in one
  transaction, and transactional ``send(conn=...)``: the app's own transaction inserting an order
  row and its webhook, committed, per message.
- **Delivery**: every contender sends the same signed event to one sink (asyncio, keep-alive,
  answers 200 at once, in a process of its own) that notes the time of the first and the last
  request it answers: rate = (requests - 1) / (last - first), by the sink's clock, from a backlog.
  The direct Sender sends sequentially (the baseline); the outbox's worker processes (1 or 3, 4
  threads each) drain a backlog enqueued before they start; Celery's workers (prefork, 4 or 12
  processes) run one ``requests.post`` per webhook from a backlog in Redis, signing with hmac.

Targets (issue 12): PostgreSQL batched enqueue >= 10,000 messages/s; delivery through the
PostgreSQL outbox >= 0.7x the direct Sender's rate, and >= 3x Celery + requests.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import webhooklite  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DATA = {"order_id": "ABC123", "customer": "Jane D.", "item": "Blue T-Shirt", "amount": 25.0}

SINK = r"""
import asyncio, json, sys, time

stats = {"n": 0, "first": None, "last": None}

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
            now = time.time()
            stats["n"] += 1
            if stats["first"] is None:
                stats["first"] = now
            stats["last"] = now
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=256)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        print(json.dumps(stats), flush=True)  # report, then start counting afresh
        stats.update(n=0, first=None, last=None)

asyncio.run(main())
"""

WORKER = """
import sys, webhooklite
outbox = webhooklite.Outbox(sys.argv[1], workers=4)
print("ready", flush=True)
sys.stdin.readline()
print(outbox.drain(timeout=300), flush=True)
outbox.close()
"""

CELERY_APP = r'''
import hashlib, hmac, base64, os, time, requests
from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_BROKER"])
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=4, task_ignore_result=True)
KEY = base64.b64decode(os.environ["BENCH_SECRET"].split("_", 1)[1])

@app.task
def deliver(url, msg_id, body):
    ts = str(int(time.time()))
    sig = base64.b64encode(hmac.new(KEY, f"{msg_id}.{ts}.{body}".encode(), hashlib.sha256).digest()).decode()
    headers = {"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": ts,
               "webhook-signature": f"v1,{sig}"}
    requests.post(url, data=body.encode(), headers=headers, timeout=10).raise_for_status()
'''


class Sink:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", SINK], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}/hooks"

    def take(self):
        """(requests, rate) since the last take."""
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        s = json.loads(self.proc.stdout.readline())
        rate = (s["n"] - 1) / (s["last"] - s["first"]) if s["n"] > 1 and s["last"] > s["first"] else 0.0
        return s["n"], rate

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(5)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Targets:
    """A fresh outbox target per case: a sqlite file, or a PostgreSQL schema (dropped at the end)."""

    def __init__(self, tmp, pg_url):
        self.tmp, self.pg_url, self.schemas, self.n = tmp, pg_url, [], 0

    def new(self, kind):
        self.n += 1
        if kind == "sqlite":
            return os.path.join(self.tmp, f"bench-{self.n}.db")
        import psycopg

        schema = f"bench_{os.getpid()}_{self.n}"
        with psycopg.connect(self.pg_url, autocommit=True) as c:
            c.execute(f'CREATE SCHEMA "{schema}"')
        self.schemas.append(schema)
        parts = urllib.parse.urlsplit(self.pg_url)
        query = urllib.parse.urlencode([("options", f"-csearch_path={schema}")], quote_via=urllib.parse.quote)
        return urllib.parse.urlunsplit(parts._replace(query=query))

    def drop(self):
        if self.schemas:
            import psycopg

            with psycopg.connect(self.pg_url, autocommit=True) as c:
                c.execute("SET lock_timeout = '10s'")
                for schema in self.schemas:
                    c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def fresh(targets, kind, url):
    target = targets.new(kind)
    outbox = webhooklite.Outbox(target)
    outbox.add_endpoint(url, secret=SECRET, events=["*"])
    return target, outbox


def enqueue_single(targets, kind, url, n):
    _, outbox = fresh(targets, kind, url)
    with outbox:
        t = time.perf_counter()
        for _ in range(n):
            outbox.send("payment.completed", DATA)
        return n / (time.perf_counter() - t)


def enqueue_batched(targets, kind, url, n):
    _, outbox = fresh(targets, kind, url)
    with outbox:
        items = [("payment.completed", DATA)] * n
        t = time.perf_counter()
        outbox.send_many(items)
        return n / (time.perf_counter() - t)


def enqueue_transactional(targets, kind, url, n):
    """The app's transaction: INSERT an order row and send its webhook with conn=, then COMMIT."""
    target, outbox = fresh(targets, kind, url)
    with outbox:
        if kind == "sqlite":
            import sqlite3

            conn = sqlite3.connect(target, isolation_level=None)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
            insert, begin = "INSERT INTO orders (item) VALUES (?)", "BEGIN IMMEDIATE"
        else:
            import psycopg

            conn = psycopg.connect(target, autocommit=True)
            conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, item text)")
            insert, begin = "INSERT INTO orders (item) VALUES (%s)", "BEGIN"
        t = time.perf_counter()
        for _ in range(n):
            conn.execute(begin)
            conn.execute(insert, ("Blue T-Shirt",))
            outbox.send("order.created", DATA, conn=conn)
            conn.execute("COMMIT")
        rate = n / (time.perf_counter() - t)
        conn.close()
        return rate


def direct(sink, n):
    with webhooklite.Sender(sink.url, SECRET) as sender:
        sender.send("payment.completed", DATA)
        sink.take()
        for _ in range(n):
            assert sender.send("payment.completed", DATA).ok
    got, rate = sink.take()
    assert got == n, got
    return rate


def through_outbox(targets, kind, sink, n, processes):
    target, outbox = fresh(targets, kind, sink.url)
    outbox.send_many([("payment.completed", DATA)] * n)
    outbox.close()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, target], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, env=env) for _ in range(processes)]
    try:
        for w in workers:
            assert w.stdout.readline().strip() == "ready"
        sink.take()
        for w in workers:
            w.stdin.write("go\n")
            w.stdin.flush()
        for w in workers:
            assert w.stdout.readline().strip() == "True"
    finally:
        for w in workers:
            w.kill()
            w.wait(5)
    got, rate = sink.take()
    assert got >= n, got
    return rate


class Celery:
    """redis-server on a free loopback port, and a Celery worker pool running requests.post per webhook."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.port = free_port()
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        self.r = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                self.r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        Path(tmp, "bench_celery_app.py").write_text(CELERY_APP)
        self.env = dict(os.environ, BENCH_BROKER=f"redis://127.0.0.1:{self.port}/0", BENCH_SECRET=SECRET,
                        PYTHONPATH=tmp)
        sys.path.insert(0, tmp)
        os.environ.update(BENCH_BROKER=self.env["BENCH_BROKER"], BENCH_SECRET=SECRET)
        import bench_celery_app

        self.app = bench_celery_app

    def run(self, sink, n, concurrency):
        import uuid

        body = json.dumps(dict(DATA, event="payment.completed"), separators=(",", ":"))
        with self.app.app.producer_or_acquire() as producer:
            for _ in range(n):  # the backlog, before any worker runs
                self.app.deliver.apply_async((sink.url, "msg_" + uuid.uuid4().hex, body), producer=producer)
        sink.take()
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench_celery_app", "worker", "--pool", "prefork",
             "--concurrency", str(concurrency), "--loglevel", "error", "--without-gossip", "--without-mingle",
             "--without-heartbeat"], cwd=self.tmp, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 300
            while self.r.llen("celery") > 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)  # the last tasks in flight
        finally:
            worker.terminate()
            worker.wait(30)
        got, rate = sink.take()
        assert got >= n * 0.99, got
        return rate

    def close(self):
        self.redis.terminate()
        self.redis.wait(5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres", default=os.environ.get("WEBHOOKLITE_TEST_POSTGRES"), help="a postgresql:// URL")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--messages", type=int, default=3000, help="messages per delivery run")
    ap.add_argument("--single", type=int, default=500, help="messages per single-send enqueue run")
    ap.add_argument("--batch", type=int, default=10000, help="messages per batched enqueue run")
    ap.add_argument("--no-celery", action="store_true")
    args = ap.parse_args()
    if not args.postgres:
        ap.error("give --postgres URL (or set WEBHOOKLITE_TEST_POSTGRES)")
    kinds = ["sqlite", "postgres"]
    results = {}

    def note(key, value):
        results.setdefault(key, []).append(value)

    sink = Sink()
    tmp = tempfile.mkdtemp(prefix="bench-outbox-")
    targets = Targets(tmp, args.postgres)
    celery = None if args.no_celery or not shutil.which("redis-server") else Celery(tmp)
    try:
        for rep in range(args.reps):
            for kind in kinds:
                note(("enqueue single", kind), enqueue_single(targets, kind, sink.url, args.single))
                note(("enqueue batched", kind), enqueue_batched(targets, kind, sink.url, args.batch))
                note(("enqueue transactional", kind), enqueue_transactional(targets, kind, sink.url, args.single))
            note(("deliver", "direct Sender"), direct(sink, args.messages))
            for kind in kinds:
                for procs in (1, 3):
                    note(("deliver", f"{kind} outbox, {procs} process(es)"),
                         through_outbox(targets, kind, sink, args.messages, procs))
            if celery is not None:
                for conc in (4, 12):
                    note(("deliver", f"Celery + Redis + requests.post, {conc} processes"),
                         celery.run(sink, args.messages, conc))
            print(f"rep {rep + 1}/{args.reps} done", file=sys.stderr)
    finally:
        if celery is not None:
            celery.close()
        sink.close()
        targets.drop()
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    import psycopg
    import sqlite3

    print(f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, psycopg {psycopg.__version__}, "
          f"PostgreSQL at {urllib.parse.urlsplit(args.postgres).netloc}, {os.cpu_count()} CPUs; "
          f"medians of {args.reps} interleaved repetitions\n")
    print("| enqueue | sqlite (messages/s) | PostgreSQL (messages/s) |")
    print("| --- | ---: | ---: |")
    for case, label in (("enqueue single", "one `send()` per message, each committed"),
                        ("enqueue batched", f"`send_many()` of {args.batch:,}, one transaction"),
                        ("enqueue transactional", "app transaction: INSERT order + `send(conn=)` + COMMIT")):
        print(f"| {label} | {med[(case, 'sqlite')]:,.0f} | {med[(case, 'postgres')]:,.0f} |")
    pg_batch = med[("enqueue batched", "postgres")]
    print(f"\nPostgreSQL batched enqueue target >= 10,000/s: {'met' if pg_batch >= 10000 else 'MISSED'} ({pg_batch:,.0f}/s)\n")
    base = med[("deliver", "direct Sender")]
    celery4 = med.get(("deliver", "Celery + Redis + requests.post, 4 processes"))
    print(f"| deliver {args.messages:,} to the sink | messages/s (median) | min - max | vs direct Sender | vs Celery (4) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for (case, label), values in results.items():
        if case != "deliver":
            continue
        m = med[(case, label)]
        vs_celery = f"{m / celery4:.2f}x" if celery4 else ""
        print(f"| {label} | {m:,.0f} | {min(values):,.0f} - {max(values):,.0f} | {m / base:.2f}x | {vs_celery} |")
    pg1 = med[("deliver", "postgres outbox, 1 process(es)")]
    print(f"\nPostgreSQL outbox (1 process) >= 0.7x direct: {'met' if pg1 >= 0.7 * base else 'MISSED'} ({pg1 / base:.2f}x)")
    if celery4:
        print(f"PostgreSQL outbox (1 process) >= 3x Celery (4 processes): "
              f"{'met' if pg1 >= 3 * celery4 else 'MISSED'} ({pg1 / celery4:.2f}x)")


if __name__ == "__main__":
    main()
