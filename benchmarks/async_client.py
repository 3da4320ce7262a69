"""One asyncio sender contender, one process: ``python async_client.py KIND URL COUNT CONCURRENCY TIME_LIMIT``.

The same message as sender_client.py (the payment.completed envelope, signed the Standard
Webhooks way with a new webhook-id and a fresh timestamp each), sent COUNT times by
CONCURRENCY coroutines on one event loop:
  webhooklite  webhooklite.AsyncSender.send() (max_connections = CONCURRENCY)
  httpx        one httpx.AsyncClient (limits: CONCURRENCY connections, all kept alive)
  aiohttp      one aiohttp.ClientSession (TCPConnector(limit=CONCURRENCY))
The peers build the body with json.dumps and sign with hmac by hand (sender_client.signed).
Each answer is read to its end and must be 2xx. Prints one JSON line: sent, ok, elapsed, cpu.
"""
import asyncio
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sender_client import DATA, SECRET, signed  # noqa: E402


async def make(kind: str, url: str, concurrency: int):
    """Return (send coroutine function, async cleanup)."""
    if kind == "webhooklite":
        import webhooklite

        sender = webhooklite.AsyncSender(url, SECRET, retry=webhooklite.Retry(attempts=1), max_connections=concurrency)

        async def send(n):
            return (await sender.send("payment.completed", DATA)).ok

        return send, sender.close
    if kind == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        client = httpx.AsyncClient(timeout=10, limits=limits)

        async def send(n):
            raw, headers = signed(n)
            return (await client.post(url, content=raw, headers=headers)).is_success

        return send, client.aclose
    if kind == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                        timeout=aiohttp.ClientTimeout(total=10))

        async def send(n):
            raw, headers = signed(n)
            async with session.post(url, data=raw, headers=headers) as resp:
                await resp.read()
                return 200 <= resp.status < 300

        return send, session.close
    raise SystemExit(f"unknown kind {kind!r}")


async def main() -> None:
    kind, url, count, concurrency, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    send, cleanup = await make(kind, url, concurrency)
    await send(-1)  # one warm-up send: imports and the first connection are not measured
    results = [0, 0]
    deadline = time.monotonic() + limit
    per = [count // concurrency + (1 if i < count % concurrency else 0) for i in range(concurrency)]

    async def work(i: int) -> None:
        for n in range(per[i]):
            if time.monotonic() > deadline:
                return
            try:
                ok = await send(n)
            except Exception as e:  # counted, not fatal
                print(f"{kind}: {type(e).__name__}: {e}", file=sys.stderr)
                ok = False
            results[0] += 1
            results[1] += bool(ok)

    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    await asyncio.gather(*(work(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    await cleanup()
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    print(json.dumps({"sent": results[0], "ok": results[1], "elapsed": elapsed, "cpu": cpu}))


if __name__ == "__main__":
    asyncio.run(main())
