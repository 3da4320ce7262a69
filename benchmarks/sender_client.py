"""One sender contender, one process: ``python sender_client.py KIND URL COUNT THREADS TIME_LIMIT``.

Every contender sends the same thing: the payment.completed envelope (~300 bytes of compact
JSON with a fresh "time"), signed the Standard Webhooks way with a new webhook-id and a fresh
timestamp per message. webhooklite does it with ``Sender.send()``; the others build the body
with json.dumps and sign with hmac/base64 by hand (the cheapest way, so they are not slowed
by a signing library), then POST with:
  http.client  raw http.client.HTTPConnection, kept open (one per thread): the stdlib limit
  requests     requests.Session (one per thread)
  httpx        one shared httpx.Client
  urllib       urllib.request.urlopen (a new connection per request: it sends Connection: close)
Each answer is read to its end and must be 2xx. COUNT sends are split over THREADS threads;
TIME_LIMIT bounds the run in seconds. Prints one JSON line: sent, ok, elapsed, cpu (seconds
of CPU the client used, user + system).
"""
import base64
import hashlib
import hmac
import json
import os
import resource
import sys
import threading
import time

SECRET = os.environ["BENCH_SECRET"]
KEY = base64.b64decode(SECRET[len("whsec_"):])
DATA = {
    "order_id": "ORD-00000001",
    "customer": "Jane D.",
    "email": "jane.d@example.com",
    "item": "Blue T-Shirt",
    "sku": "TS-BLU-M",
    "quantity": 1,
    "amount": 25.0,
    "currency": "USD",
    "shipping": {"name": "Jane D.", "city": "Lisbon", "postcode": "1100-148", "country": "PT"},
    "note": "Leave at the door, please.",
}


def signed(n: int):
    """Body and headers for message n, the way a hand-rolled sender makes them."""
    body = {"event": "payment.completed"}
    body.update(DATA)
    body["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    msg_id = "msg_" + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    ts = str(int(time.time()))
    sig = base64.b64encode(hmac.new(KEY, f"{msg_id}.{ts}.".encode() + raw, hashlib.sha256).digest()).decode()
    headers = {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + sig,
    }
    return raw, headers


def make(kind: str, url: str):
    """Return (per-thread send function factory, cleanup)."""
    if kind == "webhooklite":
        import webhooklite

        sender = webhooklite.Sender(url, SECRET, retry=webhooklite.Retry(attempts=1))

        def factory():
            def send(n):
                return sender.send("payment.completed", DATA).ok
            return send

        return factory, sender.close
    if kind == "http.client":
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        conns = []

        def factory():
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            conns.append(conn)

            def send(n):
                raw, headers = signed(n)
                conn.request("POST", parts.path or "/", raw, headers)
                resp = conn.getresponse()
                resp.read()
                return 200 <= resp.status < 300
            return send

        return factory, lambda: [c.close() for c in conns]
    if kind == "requests":
        import requests

        sessions = []

        def factory():
            session = requests.Session()
            sessions.append(session)

            def send(n):
                raw, headers = signed(n)
                return session.post(url, data=raw, headers=headers, timeout=10).ok
            return send

        return factory, lambda: [s.close() for s in sessions]
    if kind == "httpx":
        import httpx

        client = httpx.Client(timeout=10)

        def factory():
            def send(n):
                raw, headers = signed(n)
                return client.post(url, content=raw, headers=headers).is_success
            return send

        return factory, client.close
    if kind == "urllib":
        import urllib.request

        def factory():
            def send(n):
                raw, headers = signed(n)
                req = urllib.request.Request(url, data=raw, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=10) as resp:
                    resp.read()
                    return 200 <= resp.status < 300
            return send

        return factory, lambda: None
    raise SystemExit(f"unknown kind {kind!r}")


def main() -> None:
    kind, url, count, threads, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    factory, cleanup = make(kind, url)
    per = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
    results = [[0, 0] for _ in range(threads)]  # sent, ok
    start_gate = threading.Barrier(threads + 1)
    deadline = [0.0]

    def work(i: int) -> None:
        send = factory()
        start_gate.wait()
        r = results[i]
        for n in range(per[i]):
            if time.monotonic() > deadline[0]:
                break
            try:
                ok = send(n)
            except Exception as e:  # counted, not fatal
                print(f"{kind}: {type(e).__name__}: {e}", file=sys.stderr)
                ok = False
            r[0] += 1
            r[1] += bool(ok)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    t0 = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    deadline[0] = time.monotonic() + limit
    start_gate.wait()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    cleanup()
    print(json.dumps({"sent": sum(r[0] for r in results), "ok": sum(r[1] for r in results), "elapsed": elapsed,
                      "cpu": cpu}))


if __name__ == "__main__":
    main()
