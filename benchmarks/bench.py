"""webhooklite against the libraries people install instead, side by side in one run.

    bash benchmarks/run.sh                # setup (idempotent) + everything, ~15 minutes
    python benchmarks/bench.py --only receiver,import --repeats 5   # ~5 minutes
    python benchmarks/bench.py --only receiver --receivers webhooklite,fastapi,asgi,asgi-async
    python benchmarks/bench.py --only async --repeats 3   # AsyncSender vs httpx.AsyncClient, aiohttp

Prints medians and ratios as a Markdown table and writes it to benchmarks/results/latest.md
(raw numbers in benchmarks/results/latest.json). Servers run on one core and their clients
on the other (taskset); every measurement is repeated --repeats times, interleaved (each
round runs every contender once, in a rotated order), and only ratios of medians taken
within one run are meaningful on a noisy machine.
"""
import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PYTHON = sys.executable
SERVER_CORE, CLIENT_CORE = "0", "1"
SECRET = "whsec_" + base64.b64encode(b"webhooklite-benchmark-secret-32b").decode()
KEY = base64.b64decode(SECRET[len("whsec_"):])
# webhooklite is imported from this checkout (BENCH_WEBHOOKLITE_PATH overrides it, to try a change).
WL_PATH = os.environ.get("BENCH_WEBHOOKLITE_PATH") or REPO
ENV = dict(os.environ, BENCH_SECRET=SECRET, PYTHONPATH=WL_PATH + os.pathsep + os.environ.get("PYTHONPATH", ""))
# Byte for byte the body wrk_signed.lua builds from a line's order number.
BODY_FMT = (
    '{"event":"payment.completed","order_id":"ORD-%08d","customer":"Jane D.",'
    '"email":"jane.d@example.com","item":"Blue T-Shirt","sku":"TS-BLU-M","quantity":1,'
    '"amount":25.0,"currency":"USD","shipping":{"name":"Jane D.","city":"Lisbon",'
    '"postcode":"1100-148","country":"PT"},"note":"Leave at the door, please.",'
    '"time":"2026-04-14T08:30:00Z"}'
)

RECEIVERS = [
    ("webhooklite", "webhooklite `Receiver.serve()` (verifying, 1 handler)"),
    ("inbox", "webhooklite `Receiver.serve()` with an `Inbox` on sqlite (202 once stored; handled after)"),
    ("stdlib-verify", "(a) http.server handler: HMAC + json.loads"),
    ("stdlib-bare", "(b) http.server handler, no verification"),
    ("flask", "(c) Flask + standardwebhooks on gunicorn (gthread, 8 threads)"),
    ("fastapi", "(d) FastAPI + standardwebhooks on uvicorn ({uvicorn})"),
    ("fastapi-thread", "(d') the same FastAPI route with the app's work in a thread (`run_in_threadpool`)"),
    ("asgi", "(e) webhooklite `receiver.asgi` on the same uvicorn, sync handler (in a thread)"),
    ("asgi-async", "(f) webhooklite `receiver.asgi` on the same uvicorn, `async def` handler (on the loop)"),
    ("canned", "(g) not a contender: a thread per connection answering each recv() with a canned 200"),
]
SENDERS = [
    ("webhooklite", "webhooklite `Sender.send()`"),
    ("http.client", "raw `http.client.HTTPConnection`, kept open"),
    ("requests", "`requests.Session`"),
    ("httpx", "`httpx.Client`"),
    ("urllib", "`urllib.request.urlopen`"),
]
ASYNC_SENDERS = [
    ("webhooklite", "webhooklite `AsyncSender.send()`"),
    ("httpx", "`httpx.AsyncClient`"),
    ("aiohttp", "`aiohttp.ClientSession`"),
]
IMPORTS = [
    ("bare", "pass"),
    ("webhooklite", "import webhooklite"),
    ("standardwebhooks", "import standardwebhooks"),
    ("requests", "import requests"),
    ("flask", "import flask"),
]


def log(*args) -> None:
    print(time.strftime("[%H:%M:%S]"), *args, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """Until the server answers anything to a GET (every contender answers 4xx/5xx/2xx)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(16).startswith(b"HTTP/1."):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on {port} not ready after {timeout} s")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# -- receiver ----------------------------------------------------------------


def write_pool(path: str, n: int) -> None:
    """n requests, each with its own webhook-id, signed now (the tolerance is 300 s)."""
    tag = base64.b32encode(os.urandom(5)).decode().lower()
    ts = str(int(time.time()))
    key, b64, fmt = KEY, base64.b64encode, BODY_FMT
    with open(path, "w") as f:
        lines = []
        for i in range(n):
            msg_id = f"msg_{tag}{i:08d}"
            mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + (fmt % i).encode(), hashlib.sha256).digest()
            lines.append(f"{msg_id}\t{ts}\tv1,{b64(mac).decode()}\t{i}\n")
            if len(lines) >= 10000:
                f.writelines(lines)
                lines.clear()
        f.writelines(lines)


#: --baseline PATH: webhooklite's contenders run a second time from that checkout, in the same rounds.
BASE = "@base"
BASELINE = [""]


def start_receiver(kind: str, port: int, report: str = "", every: float = 0) -> subprocess.Popen:
    env = dict(ENV, BENCH_REPORT=report, BENCH_REPORT_EVERY=str(every or ""))
    if kind.endswith(BASE):  # the same contender on another checkout's webhooklite (--baseline)
        kind = kind[: -len(BASE)]
        env["PYTHONPATH"] = BASELINE[0] + os.pathsep + os.environ.get("PYTHONPATH", "")
    if kind == "flask":
        gunicorn = os.path.join(os.path.dirname(PYTHON), "gunicorn")
        cmd = [gunicorn, "-k", "gthread", "--threads", "8", "-w", "1", "-b", f"127.0.0.1:{port}",
               "--chdir", HERE, "--log-level", "warning", "flask_app:app"]
    else:
        cmd = [PYTHON, os.path.join(HERE, "servers.py"), kind, str(port)]
    proc = subprocess.Popen(["taskset", "-c", SERVER_CORE] + cmd, env=env, stdout=subprocess.DEVNULL)
    wait_ready(port, proc)
    return proc


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live descendants (gunicorn's worker)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo, seen = 0.0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError, IndexError):
            pass
    return total


def run_wrk(port: int, conns: int, duration: float, pool: str, box: Optional[dict] = None) -> dict:
    """One wrk run; ``box["proc"]`` is the wrk process (SIGINT ends it early, with its summary)."""
    cmd = ["taskset", "-c", CLIENT_CORE, "wrk", "-t1", f"-c{conns}", f"-d{int(duration)}s", "--timeout", "5s",
           "-s", os.path.join(HERE, "wrk_signed.lua"), f"http://127.0.0.1:{port}/", "--", pool]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if box is not None:
        box["proc"] = proc
    try:
        out = proc.communicate(timeout=duration + 60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    m = re.search(r"WRKRESULT (.*)", out)
    if not m:
        raise RuntimeError("wrk said:\n" + out)
    r = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["rate"] = (r["ok"] - r["dup"]) / (r["duration_us"] / 1e6)
    return r


def uvicorn_label() -> str:
    """How the uvicorn contenders run: 1 worker, and which loop and parser (servers.uvicorn_options)."""
    code = "import json, servers; print(json.dumps(servers.uvicorn_options()))"
    env = dict(ENV, PYTHONPATH=HERE + os.pathsep + ENV["PYTHONPATH"], BENCH_SECRET=SECRET)
    p = subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    try:
        o = json.loads(p.stdout)
    except ValueError:
        return "uvicorn not installed"
    return f"1 worker, {o['loop']}, {o['http']}"


def baseline_label(path: str) -> str:
    try:
        rev = subprocess.run(["git", "-C", path, "log", "-1", "--format=%h %s"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
    except OSError:
        rev = ""
    return f"`{path}`" + (f" ({rev[:60]})" if rev else "")


def bench_receiver(args, results: dict) -> None:
    kinds = args.receivers.split(",")
    if args.baseline:
        BASELINE[0] = os.path.abspath(args.baseline)
        kinds += [k + BASE for k in kinds if k in ("webhooklite", "inbox", "asgi", "asgi-async")]
    unknown = {k for k in kinds if not k.endswith(BASE)} - {k for k, _ in RECEIVERS}
    if unknown or "webhooklite" not in kinds:
        sys.exit(f"--receivers: unknown {sorted(unknown)}; webhooklite is always one (the ratios' numerator)")
    conns_list = (1, 32)
    runs = {f"{k}@{c}": [] for k in kinds for c in conns_list}
    tmp = tempfile.mkdtemp(prefix="wl-bench-")
    pool = os.path.join(tmp, "requests.tsv")
    try:
        for rnd in range(args.repeats):
            t0 = time.monotonic()
            write_pool(pool, args.pool)  # fresh timestamps for every round
            log(f"receiver round {rnd + 1}/{args.repeats} (pool of {args.pool} signed in {time.monotonic() - t0:.1f} s)")
            order = kinds[rnd % len(kinds):] + kinds[:rnd % len(kinds)]
            for conns in conns_list:
                for kind in order:
                    port = free_port()
                    report = os.path.join(tmp, f"{kind}.report")
                    proc = start_receiver(kind, port, report)
                    try:
                        cpu0 = tree_cpu(proc.pid)
                        r = run_wrk(port, conns, args.duration, pool)
                        # Server CPU per answered request: steadier than the rate on a shared machine.
                        r["cpu_us"] = (tree_cpu(proc.pid) - cpu0) / max(r["ok"], 1) * 1e6
                    finally:
                        stop(proc, signal.SIGINT if kind == "flask" else signal.SIGTERM)
                    if os.path.exists(report):
                        with open(report) as f:
                            r["handled"] = json.load(f)["handled"]
                        os.unlink(report)
                    runs[f"{kind}@{conns}"].append(r)
                    log(f"  {kind:14s} c={conns:<3d} {r['rate']:8.0f} 2xx/s  {r['cpu_us']:5.0f} µs CPU/req  "
                        f"other={r['other']} dup={r['dup']} "
                        f"errors={r['errors']} exhausted={r['exhausted']} handled={r.get('handled')}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["receiver"] = runs
    results["receiver_uvicorn"] = uvicorn_label()
    if args.baseline:
        results["receiver_baseline"] = baseline_label(args.baseline)


# -- sender ------------------------------------------------------------------

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location = /nginx_status {{ stub_status; }}
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


def nginx_accepts(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/nginx_status", timeout=5) as r:
        text = r.read().decode()
    return int(text.split("\n")[2].split()[0])  # " accepts handled requests" line


class NginxSink:
    """An nginx ``return 200`` sink on the server core, for the sender benchmarks."""

    def __enter__(self) -> "NginxSink":
        self.tmp = tempfile.mkdtemp(prefix="wl-nginx-")
        self.port = free_port()
        with open(os.path.join(self.tmp, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(tmp=self.tmp, port=self.port))
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, "nginx", "-p", self.tmp, "-c", os.path.join(self.tmp, "nginx.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(self.port, self.proc)
        except BaseException:
            self.__exit__()
            raise
        self.url = f"http://127.0.0.1:{self.port}/hook"
        return self

    def __exit__(self, *exc) -> None:
        stop(self.proc, signal.SIGQUIT)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run(self, args, script: str, kind: str, count: int, workers: int) -> dict:
        """One client process (``script KIND URL COUNT WORKERS LIMIT``) on the client core; its JSON line."""
        before = nginx_accepts(self.port)
        cmd = ["taskset", "-c", CLIENT_CORE, PYTHON, os.path.join(HERE, script),
               kind, self.url, str(count), str(workers), str(args.send_limit)]
        p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=args.send_limit + 60)
        after = nginx_accepts(self.port)
        try:
            r = json.loads(p.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise RuntimeError(f"{kind} failed:\n{p.stdout}\n{p.stderr}")
        r["connections"] = after - before - 1  # minus the status request's own
        r["rate"] = r["ok"] / r["elapsed"]
        r["stderr"] = p.stderr.strip()[:200]
        return r


def bench_sender(args, results: dict) -> None:
    kinds = [k for k, _ in SENDERS]
    scenarios = [("seq", args.seq_count, 1), ("threads", args.thread_count, 8)]
    runs = {f"{k}@{s}": [] for k in kinds for s, _, _ in scenarios}
    with NginxSink() as sink:
        for rnd in range(args.repeats):
            log(f"sender round {rnd + 1}/{args.repeats}")
            order = kinds[rnd % len(kinds):] + kinds[:rnd % len(kinds)]
            for scen, count, threads in scenarios:
                for kind in order:
                    r = sink.run(args, "sender_client.py", kind, count, threads)
                    runs[f"{kind}@{scen}"].append(r)
                    log(f"  {kind:12s} {scen:8s} {r['rate']:8.0f} ok/s  sent={r['sent']} ok={r['ok']} "
                        f"conns={r['connections']}" + (f"  stderr: {r['stderr']}" if r["stderr"] else ""))
    results["sender"] = runs


def async_kinds() -> list:
    """The asyncio contenders installed in this venv (aiohttp is optional: it may not install)."""
    kinds = []
    for kind, _ in ASYNC_SENDERS:
        module = "webhooklite" if kind == "webhooklite" else kind
        probe = subprocess.run([PYTHON, "-c", f"import {module}"], env=ENV, capture_output=True)
        if probe.returncode == 0:
            kinds.append(kind)
        else:
            log(f"async: {module} is not installed in {sys.prefix}: left out")
    return kinds


def bench_async(args, results: dict) -> None:
    """AsyncSender against httpx.AsyncClient (and aiohttp) at 1 and 32 concurrent sends, and the
    threaded Sender at 8 threads, in one run, each a fresh client process on the client core."""
    kinds = async_kinds()
    scenarios = [("c1", args.async_count_1, 1), ("c32", args.async_count_32, 32)]
    runs = {f"{k}@{s}": [] for k in kinds for s, _, _ in scenarios}
    runs["threaded@t8"] = []
    with NginxSink() as sink:
        for rnd in range(args.repeats):
            log(f"async round {rnd + 1}/{args.repeats}")
            order = kinds[rnd % len(kinds):] + kinds[:rnd % len(kinds)]
            for scen, count, conc in scenarios:
                for kind in order:
                    r = sink.run(args, "async_client.py", kind, count, conc)
                    runs[f"{kind}@{scen}"].append(r)
                    log(f"  {kind:12s} {scen:4s} {r['rate']:8.0f} ok/s  sent={r['sent']} ok={r['ok']} "
                        f"cpu={r['cpu']:.2f} s conns={r['connections']}"
                        + (f"  stderr: {r['stderr']}" if r["stderr"] else ""))
            r = sink.run(args, "sender_client.py", "webhooklite", args.async_count_32, 8)
            runs["threaded@t8"].append(r)
            log(f"  {'Sender':12s} t8   {r['rate']:8.0f} ok/s  sent={r['sent']} ok={r['ok']} cpu={r['cpu']:.2f} s "
                f"conns={r['connections']}")
    results["async"] = runs


# -- import ------------------------------------------------------------------


def bench_import(args, results: dict) -> None:
    runs = {k: [] for k, _ in IMPORTS}
    tmp = tempfile.mkdtemp(prefix="wl-hyperfine-")
    # Every module, stdlib and peers included, is timed from compiled bytecode, as after a pip
    # install: the warm-up runs write it to a cache outside the repo (PYTHONDONTWRITEBYTECODE
    # would otherwise leave this checkout, unlike the installed peers, compiling on every run).
    env = dict(ENV, PYTHONPYCACHEPREFIX=os.path.join(tmp, "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        for rnd in range(args.repeats):
            log(f"import round {rnd + 1}/{args.repeats}")
            out = os.path.join(tmp, f"r{rnd}.json")
            order = IMPORTS[rnd % len(IMPORTS):] + IMPORTS[:rnd % len(IMPORTS)]
            cmd = ["taskset", "-c", CLIENT_CORE, "hyperfine", "-N", "--warmup", "5", "--runs", str(args.import_runs),
                   "--style", "none", "--export-json", out]
            for _, code in order:
                cmd.append(f"{PYTHON} -c '{code}'")
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, timeout=600)
            with open(out) as f:
                data = json.load(f)
            by_code = {r["command"]: r for r in data["results"]}
            for name, code in IMPORTS:
                runs[name].append(by_code[f"{PYTHON} -c '{code}'"]["median"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["import"] = runs


# -- memory ------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def bench_memory(args, results: dict) -> None:
    tmp = tempfile.mkdtemp(prefix="wl-mem-")
    pool = os.path.join(tmp, "requests.tsv")
    report = os.path.join(tmp, "report.json")
    try:
        t0 = time.monotonic()
        write_pool(pool, args.memory_requests)
        log(f"memory: {args.memory_requests} requests signed in {time.monotonic() - t0:.1f} s; "
            f"serving for at most {args.memory_seconds} s")
        port = free_port()
        proc = start_receiver("webhooklite", port, report, every=1.0)
        samples = []
        box = {}

        def load() -> None:
            box["wrk"] = run_wrk(port, 32, args.memory_seconds, pool, box)

        t = threading.Thread(target=load)
        start = time.monotonic()
        t.start()
        while t.is_alive():
            time.sleep(2.0)
            try:
                with open(report) as f:
                    rep = json.load(f)
            except (OSError, ValueError):
                rep = {"handled": 0, "store_ids": 0}
            samples.append({"t": round(time.monotonic() - start, 1), "rss_kib": rss_kib(proc.pid), **rep})
            if rep.get("handled", 0) >= args.memory_requests - 64 and "proc" in box:
                box["proc"].send_signal(signal.SIGINT)  # the pool is used up: end wrk now, not at its -d
        t.join()
        samples.append({"t": round(time.monotonic() - start, 1), "rss_kib": rss_kib(proc.pid), **rep})
        stop(proc)
        with open(report) as f:
            final = json.load(f)
        results["memory"] = {"samples": samples, "wrk": box.get("wrk"), "final": final,
                             "requests": args.memory_requests, "seconds": args.memory_seconds}
        log(f"memory: handled {final['handled']}, store {final['store_ids']}, "
            f"RSS {samples[0]['rss_kib'] // 1024} -> {samples[-1]['rss_kib'] // 1024} MiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- report ------------------------------------------------------------------


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs "
            f"(nproc), {cpu}; Python {platform.python_version()}; {platform.system()} {platform.release()}")


def versions() -> str:
    from importlib.metadata import version, PackageNotFoundError

    out = []
    for pkg in ("requests", "httpx", "httpcore", "anyio", "sniffio", "aiohttp", "flask", "gunicorn", "fastapi", "starlette",
                "uvicorn", "uvloop", "httptools", "standardwebhooks"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            pass
    for tool, flag in (("wrk", "-v"), ("nginx", "-v"), ("hyperfine", "--version")):
        try:
            p = subprocess.run([tool, flag], capture_output=True, text=True, timeout=10)
            text = (p.stdout + p.stderr).strip().splitlines()[0]
            out.append(text.split(" [")[0].replace("nginx version: ", ""))
        except (OSError, IndexError):
            pass
    return ", ".join(out)


def report(args, results: dict) -> str:
    lines = [f"Machine: {machine()}.", f"Peers: {versions()}.", ""]
    targets = []

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    if "receiver" in results:
        runs = results["receiver"]
        med = {k: median([r["rate"] for r in v]) for k, v in runs.items()}
        bad = {k: sum(r["other"] + r["dup"] + r["errors"] + r["exhausted"] for r in v) for k, v in runs.items()}
        have = [(k, label) for k, label in RECEIVERS if f"{k}@1" in runs]
        have += [(k + BASE, label + " — baseline: " + results.get("receiver_baseline", ""))
                 for k, label in RECEIVERS if f"{k}{BASE}@1" in runs]
        uv = results.get("receiver_uvicorn", "")
        lines += [
            f"**Receiver**: signed {len(BODY_FMT % 0)}-byte JSON events, each with its own webhook-id "
            f"(none repeats within a run: wrk stops rather than wrap), wrk -t1 for {args.duration:g} s; "
            f"2xx answers per second, median of {args.repeats}, server on core {SERVER_CORE}, wrk on core {CLIENT_CORE}.",
            "",
            "| receiver | 1 connection | webhooklite ÷ this | µs CPU/req | 32 connections | webhooklite ÷ this "
            "| µs CPU/req | non-2xx/dup/errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        cpu = {k: median([r.get("cpu_us", float("nan")) for r in v]) for k, v in runs.items()}
        for kind, label in have:
            r1, r32 = med[f"{kind}@1"], med[f"{kind}@32"]
            q1, q32 = ratio(med["webhooklite@1"], r1), ratio(med["webhooklite@32"], r32)
            lines.append(f"| {label.format(uvicorn=uv)} | {fmt_int(r1)} | {q1:.2f}x | {cpu[f'{kind}@1']:.0f} | "
                         f"{fmt_int(r32)} | {q32:.2f}x | {cpu[f'{kind}@32']:.0f} | {bad[f'{kind}@1'] + bad[f'{kind}@32']} |")

        def target(name: str, a: str, b: str, bound: float) -> None:
            """Ratio of medians of contenders a and b, and the range of the per-round ratios."""
            for c in (1, 32):
                if f"{a}@{c}" in runs and f"{b}@{c}" in runs:
                    per = [ratio(x["rate"], y["rate"]) for x, y in zip(runs[f"{a}@{c}"], runs[f"{b}@{c}"])]
                    targets.append((f"{name}, {c} conn", ratio(med[f"{a}@{c}"], med[f"{b}@{c}"]), bound,
                                    f"{min(per):.2f}-{max(per):.2f}",
                                    f"{ratio(cpu[f'{b}@{c}'], cpu[f'{a}@{c}']):.2f}x"))

        target("Receiver ≥ 1.0x hand-written verifying http.server", "webhooklite", "stdlib-verify", 1.0)
        target("Receiver ≥ 1.0x bare http.server (stretch)", "webhooklite", "stdlib-bare", 1.0)
        target("Receiver ≥ 3x Flask + standardwebhooks on gunicorn", "webhooklite", "flask", 3.0)
        target(f"Receiver ≥ 2x FastAPI + standardwebhooks on uvicorn ({uv})", "webhooklite", "fastapi", 2.0)
        target("receiver.asgi (sync handler) ≥ 1.3x FastAPI's route, both on that uvicorn", "asgi", "fastapi", 1.3)
        target("receiver.asgi (sync handler) ≥ 1.3x FastAPI's route with its work in a thread (like for like; "
               "not the stated target)", "asgi", "fastapi-thread", 1.3)
        for kind in ("webhooklite", "inbox", "asgi", "asgi-async"):
            target(f"{kind} now ÷ {kind} at the baseline (not a target)", kind, kind + BASE, 1.0)
        target("receiver.asgi (async def handler) ≥ 1.3x FastAPI's route, both on that uvicorn",
               "asgi-async", "fastapi", 1.3)
        target("Receiver with an Inbox on sqlite ≥ 0.5x the in-memory receiver", "inbox", "webhooklite", 0.5)
        target("Receiver with an Inbox on sqlite ≥ 2x Flask + standardwebhooks on gunicorn", "inbox", "flask", 2.0)
        lines.append("")

    if "sender" in results:
        runs = results["sender"]
        med = {k: median([r["rate"] for r in v]) for k, v in runs.items()}
        conns = {k: max(r["connections"] for r in v) for k, v in runs.items()}
        fails = {k: sum(r["sent"] - r["ok"] for r in v) for k, v in runs.items()}
        lines += [
            f"**Sender**: the same signed ~{len(BODY_FMT % 0)}-byte event (fresh id, timestamp and signature "
            f"each) to an nginx `return 200` sink on core {SERVER_CORE}, client on core {CLIENT_CORE}; "
            f"{args.seq_count:,} sequential sends and {args.thread_count:,} over 8 threads; sends per second, "
            f"median of {args.repeats}; TCP connections counted by nginx stub_status (most in one run).",
            "",
            "| sender | sequential | webhooklite ÷ this | TCP conns | 8 threads | webhooklite ÷ this | TCP conns | failed |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for kind, label in SENDERS:
            s, t = med[f"{kind}@seq"], med[f"{kind}@threads"]
            lines.append(
                f"| {label} | {fmt_int(s)} | {ratio(med['webhooklite@seq'], s):.2f}x | {conns[f'{kind}@seq']:,} | "
                f"{fmt_int(t)} | {ratio(med['webhooklite@threads'], t):.2f}x | {conns[f'{kind}@threads']:,} | "
                f"{fails[f'{kind}@seq'] + fails[f'{kind}@threads']} |")
        for scen, name in (("seq", "sequential"), ("threads", "8 threads")):
            targets.append((f"Sender ≥ 0.85x raw http.client, {name}",
                            ratio(med[f"webhooklite@{scen}"], med[f"http.client@{scen}"]), 0.85))
        for scen, name in (("seq", "sequential"), ("threads", "8 threads")):
            targets.append((f"Sender ≥ 2.5x requests.Session, {name}",
                            ratio(med[f"webhooklite@{scen}"], med[f"requests@{scen}"]), 2.5))
        lines.append("")

    if "async" in results:
        runs = results["async"]
        med = {k: median([r["rate"] for r in v]) for k, v in runs.items()}
        cpu = {k: median([r["cpu"] / max(r["ok"], 1) * 1e6 for r in v]) for k, v in runs.items()}
        conns = {k: max(r["connections"] for r in v) for k, v in runs.items()}
        fails = {k: sum(r["sent"] - r["ok"] for r in v) for k, v in runs.items()}
        lines += [
            f"**Async sender**: the same signed event to the nginx sink; {args.async_count_1:,} sends one at a time "
            f"and {args.async_count_32:,} by 32 concurrent coroutines on one event loop (32 connections at most "
            f"for every contender), each a fresh process on core {CLIENT_CORE}; the threaded `Sender` sends the "
            f"{args.async_count_32:,} from 8 threads. Sends per second, median of {args.repeats}; CPU µs per send "
            f"(user + system, client process).",
            "",
            "| sender | 1 concurrent | AsyncSender ÷ this | µs CPU/send | 32 concurrent | AsyncSender ÷ this "
            "| µs CPU/send | TCP conns | failed |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        w1, w32 = med.get("webhooklite@c1", float("nan")), med.get("webhooklite@c32", float("nan"))
        for kind, label in ASYNC_SENDERS:
            if f"{kind}@c1" not in med:
                lines.append(f"| {label} | not installed | | | | | | | |")
                continue
            a, b = med[f"{kind}@c1"], med[f"{kind}@c32"]
            lines.append(f"| {label} | {fmt_int(a)} | {ratio(w1, a):.2f}x | {cpu[f'{kind}@c1']:.0f} | {fmt_int(b)} | "
                         f"{ratio(w32, b):.2f}x | {cpu[f'{kind}@c32']:.0f} | {conns[f'{kind}@c32']:,} | "
                         f"{fails[f'{kind}@c1'] + fails[f'{kind}@c32']} |")
        t8 = med["threaded@t8"]
        lines.append(f"| webhooklite `Sender.send()`, 8 threads | | | | {fmt_int(t8)} | {ratio(w32, t8):.2f}x | "
                     f"{cpu['threaded@t8']:.0f} | {conns['threaded@t8']:,} | {fails['threaded@t8']} |")
        if "httpx@c32" in med:
            targets.append(("AsyncSender ≥ 2x httpx.AsyncClient, 32 concurrent", ratio(w32, med["httpx@c32"]), 2.0))
        if "aiohttp@c32" in med:
            targets.append(("AsyncSender ≥ 1.0x aiohttp (not a stated target), 32 concurrent",
                            ratio(w32, med["aiohttp@c32"]), 1.0))
        targets.append(("AsyncSender at 32 concurrent ≥ 0.8x threaded Sender at 8 threads", ratio(w32, t8), 0.8))
        lines.append("")

    if "import" in results:
        runs = results["import"]
        med = {k: median(v) * 1000 for k, v in runs.items()}
        added = {k: med[k] - med["bare"] for k in med}
        lines += [
            f"**Import**: hyperfine, `python -c ...`, median of {args.repeats} rounds of {args.import_runs} runs "
            f"each (5 warm-up), on core {CLIENT_CORE}.",
            "",
            "| command | ms | added over `pass` (ms) | webhooklite's added ÷ this added |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, code in IMPORTS:
            q = "" if name == "bare" else f"{ratio(added['webhooklite'], added[name]):.2f}x"
            lines.append(f"| `python -c \"{code}\"` | {med[name]:.1f} | {added[name]:.1f} | {q} |")
        targets.append(("import webhooklite adds ≤ 0.8x what import standardwebhooks adds",
                        ratio(added["webhooklite"], added["standardwebhooks"]), -0.8))
        lines.append("")

    if "memory" in results:
        mem = results["memory"]
        s = mem["samples"]
        final = mem["final"]
        full = next((x for x in s if x.get("store_ids", 0) >= 100_000), None)
        half = next((x for x in s if x.get("handled", 0) >= final["handled"] / 2), None)
        w = mem["wrk"] or {}
        lines += [
            f"**Memory**: one webhooklite `Receiver.serve()` (default `MemoryStore`, 100,000 ids), wrk 32 connections, "
            f"{mem['requests']:,} pre-signed unique requests, at most {mem['seconds']} s; RSS from /proc.",
            "",
            "| seconds | events handled | ids in the dedupe store | RSS (MiB) |",
            "| ---: | ---: | ---: | ---: |",
        ]
        step = max(1, len(s) // 10)
        picked = s[::step] + ([s[-1]] if (len(s) - 1) % step else [])
        for x in picked:
            lines.append(f"| {x['t']:g} | {x.get('handled', 0):,} | {x.get('store_ids', 0):,} | {x['rss_kib'] / 1024:.1f} |")
        if full is not None and half is not None:
            growth = (s[-1]["rss_kib"] - full["rss_kib"]) / 1024
            served = s[-1]["handled"] - full["handled"]
            growth2 = (s[-1]["rss_kib"] - half["rss_kib"]) / 1024
            served2 = s[-1]["handled"] - half["handled"]
            per_m = growth2 / served2 * 1e6 if served2 else float("nan")
            peak = max(x["rss_kib"] for x in s) / 1024
            lines += ["", f"{final['handled']:,} events handled; RSS peaked at {peak:.1f} MiB. From the store filling up "
                      f"(at {full['handled']:,} events) to the end, RSS moved {growth:+.1f} MiB; over the second half "
                      f"of the run ({served2:,} events from {half['handled']:,}) it moved {growth2:+.1f} MiB "
                      f"({per_m:+.1f} MiB per million). Non-2xx: {w.get('other')}, duplicates: {w.get('dup')}, "
                      f"socket errors: {w.get('errors')}."]
            if final["handled"] < 1_000_000:
                lines.append(f"This run served {final['handled']:,} requests, fewer than 1,000,000: "
                             f"beyond that is extrapolated from the samples above.")
            targets.append(("Receiver RSS flat over the second half of the memory run (MiB per million requests, ≤ 5)",
                            per_m, -5.0))
        lines.append("")

    if targets:
        lines += ["**Targets** (ratios of medians in this run; for the receiver, the range of the ratios "
                  "round by round, a measure of the noise, and the ratio of server CPU per request, "
                  "the other's ÷ ours, which a shared core disturbs much less)", "",
                  "| target | measured | per round | CPU/req | holds |", "| --- | ---: | ---: | ---: | :---: |"]
        for name, value, bound, *extra in targets:
            holds = value <= -bound if bound < 0 else value >= bound
            unit = "" if "MiB" in name else "x"
            spread, cpu_ratio = (extra + ["", ""])[:2]
            lines.append(f"| {name} | {value:.2f}{unit} | {spread} | {cpu_ratio} | {'yes' if holds else '**no**'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="receiver,sender,async,import,memory")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    p.add_argument("--baseline", default="", help="a checkout whose webhooklite runs beside this one's (receiver)")
    p.add_argument("--receivers", default=",".join(k for k, _ in RECEIVERS),
                   help="the receiver contenders, comma-separated (webhooklite always among them)")
    p.add_argument("--pool", type=int, default=200_000, help="pre-signed requests per receiver round")
    p.add_argument("--seq-count", type=int, default=5000)
    p.add_argument("--thread-count", type=int, default=20000)
    p.add_argument("--async-count-1", type=int, default=3000, help="sends per async run, one at a time")
    p.add_argument("--async-count-32", type=int, default=10000, help="sends per async run, 32 concurrent")
    p.add_argument("--send-limit", type=float, default=60.0, help="seconds at most per sender run")
    p.add_argument("--import-runs", type=int, default=20)
    p.add_argument("--memory-requests", type=int, default=2_000_000)
    p.add_argument("--memory-seconds", type=int, default=200)
    p.add_argument("--out", default=os.path.join(HERE, "results", "latest.md"))
    args = p.parse_args()
    for tool in ("taskset", "wrk", "nginx", "hyperfine"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: run benchmarks/setup.sh")
    if (os.cpu_count() or 1) < 2:
        log("warning: one CPU; server and client share it")
    results: dict = {}
    only = args.only.split(",")
    for name, fn in (("receiver", bench_receiver), ("sender", bench_sender), ("async", bench_async),
                     ("import", bench_import), ("memory", bench_memory)):
        if name in only:
            fn(args, results)
    text = report(args, results)
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(f"# Benchmark run: `{' '.join(['python', 'benchmarks/bench.py'] + sys.argv[1:])}`\n\n" + text)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump({"args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
