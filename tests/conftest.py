"""Shared fixtures: secrets, signed requests, and the transports a Receiver runs on."""
import contextlib
import os
import http.client
import itertools
import json
import os
import socket
import struct
import threading
import time
import urllib.parse
from typing import Callable, Dict, Iterator, Optional, Tuple

import pytest

import transports
import webhooklite
from webhooklite.signing import new_message_id

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

#: (status, headers as a lower-case dict, body) of one answer.
Answer = Tuple[int, Dict[str, str], bytes]
#: call(method, path, headers, body) -> Answer
Call = Callable[[str, str, Dict[str, str], bytes], Answer]


def signed(
    event: str = "payment.completed",
    data: Optional[dict] = None,
    *,
    secret=SECRET,
    msg_id: Optional[str] = None,
    timestamp: Optional[int] = None,
    body: Optional[bytes] = None,
) -> Tuple[Dict[str, str], bytes]:
    """Headers and body of a request signed the way a Sender signs it."""
    if body is None:
        body = webhooklite.events.encode_event(event, data or {"item": "Blue T-Shirt"})
    msg_id = msg_id or new_message_id()
    headers = {"Content-Type": "application/json"}
    headers.update(webhooklite.sign(body, secret, msg_id=msg_id, timestamp=timestamp))
    return headers, body


@contextlib.contextmanager
def socket_transport(receiver: webhooklite.Receiver) -> Iterator[Call]:
    """The Receiver on its own HTTP server, over a real loopback socket."""
    with receiver.start(port=0) as server:
        def call(method: str, path: str, headers: Dict[str, str], body: bytes) -> Answer:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
            finally:
                conn.close()

        yield call


#: Every transport a Receiver can run on; the status table is driven against each.
TRANSPORTS: Dict[str, Callable[[webhooklite.Receiver], "contextlib.AbstractContextManager[Call]"]] = {
    "socket": socket_transport,
    "wsgi": transports.wsgi_transport,  # wsgiref + wsgiref.validate, real socket
    "asgi": transports.asgi_transport,  # receiver.asgi, called as an ASGI server would
}


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request):
    """A factory: ``with transport(receiver) as call: call(method, path, headers, body)``."""
    return TRANSPORTS[request.param]


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def body_json(answer: Answer) -> dict:
    return json.loads(answer[2])


class LoopbackServer:
    """A loopback HTTP/1.1 test server; subclasses say how to answer in :meth:`respond`.

    It records every request (``.requests``: method, path, lower-case headers,
    body) and counts the TCP connections it accepted (``.connections``).
    """

    def __init__(self):
        self.requests = []
        self.connections = 0
        self._lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        #: The server's origin, e.g. "http://127.0.0.1:40123".
        self.base = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def respond(self, conn, method, path, headers, body):
        """Answer one request on ``conn``; return whether to keep the connection."""
        raise NotImplementedError

    def answer(self, conn, status, payload=b'{"ok":true}', headers=None, close=False):
        head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(payload)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        if close:
            head += "Connection: close\r\n"
        conn.sendall(head.encode("latin-1") + b"\r\n" + payload)
        return not close

    @staticmethod
    def reset(conn):
        """Close abruptly (TCP RST)."""
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(5)
        f = conn.makefile("rb")
        try:
            while not self._stop.is_set():
                line = f.readline()
                if not line:
                    return
                method, path, _ = line.decode().split(" ", 2)
                headers = {}
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b""):
                        break
                    k, v = h.decode().split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                body = f.read(int(headers.get("content-length", 0)))
                with self._lock:
                    self.requests.append((method, path, headers, body))
                if not self.respond(conn, method, path, headers, body):
                    return
        except (OSError, ValueError):
            return
        finally:
            f.close()
            conn.close()

    def close(self):
        self._stop.set()
        self.sock.close()
        self._thread.join(2)


class ScriptedServer(LoopbackServer):
    """Answers each request as its script says (used in order; the last entry repeats).

    ``200`` / ``(503, {"Retry-After": "1"})`` / ``(302, {"Location": "/x"})``: answer that;
    ``"reset"``: close the connection abruptly; ``("sleep", s)``: wait s seconds, then 200;
    ``"close"``: answer 200 with ``Connection: close``.
    """

    def __init__(self, script):
        self.script = list(script)
        super().__init__()
        self.url = self.base + "/hook"

    def respond(self, conn, method, path, headers, body):
        with self._lock:
            action = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if action == "reset":
            return self.reset(conn)
        if action == "close":
            return self.answer(conn, 200, close=True)
        if isinstance(action, tuple) and action[0] == "sleep":
            time.sleep(action[1])
            return self.answer(conn, 200)
        status, extra = action if isinstance(action, tuple) else (action, {})
        return self.answer(conn, status, headers=extra)


@pytest.fixture
def scripted():
    """``scripted(script) -> ScriptedServer``; closed after the test."""
    servers = []

    def make(script):
        server = ScriptedServer(script)
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.close()


# -- under .ci/run nothing may skip -------------------------------------------------------------
#: .ci/run sets WEBHOOKLITE_CI=1 after installing every service and test-only package: there, a
#: test that would skip (no PostgreSQL, no Chromium, no uvicorn...) fails instead, with its reason.
CI = os.environ.get("WEBHOOKLITE_CI") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under WEBHOOKLITE_CI=1, where nothing may skip: {reason}"


# -- services a test needs (PostgreSQL, Chromium...) -------------------------------------------------
#
# A test that needs a service reads its environment variable; without it the test skips and says
# why, so the README's test command passes on a fresh machine. Under WEBHOOKLITE_CI=1 (.ci/run
# sets it) a missing service fails the test instead: CI never passes by skipping.


def missing(reason: str) -> None:
    """Skip with ``reason``; under WEBHOOKLITE_CI=1, fail instead."""
    if os.environ.get("WEBHOOKLITE_CI") == "1":
        pytest.fail(f"{reason} (WEBHOOKLITE_CI=1: a missing service fails the run)", pytrace=False)
    pytest.skip(reason)


def need_service(var: str, what: str) -> str:
    """The value of environment variable ``var`` (a URL, a path), or skip/fail via :func:`missing`."""
    value = os.environ.get(var, "").strip()
    if not value:
        missing(f"{what}: set {var} to run this test")
    return value


def need_module(name: str, why: str):
    """Import ``name`` or skip/fail via :func:`missing` (e.g. a database driver)."""
    try:
        return __import__(name)
    except ImportError:
        missing(f"{why}: pip install {name}")


_SCHEMAS = itertools.count()


def _with_params(url: str, **params: str) -> str:
    """``url`` with query parameters added (libpq reads ``options`` and ``application_name`` from it)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    query += list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote)))


@pytest.fixture
def postgres():
    """A private schema on the test PostgreSQL (``WEBHOOKLITE_TEST_POSTGRES``), dropped afterwards.

    Returns a factory: ``postgres()`` makes one more schema and returns a URL whose
    ``search_path`` is that schema and whose ``application_name`` names it (so a test can find,
    and kill, its own connections among other developers' on the same server).
    """
    base = need_service("WEBHOOKLITE_TEST_POSTGRES", "needs PostgreSQL")
    psycopg = need_module("psycopg", "needs the PostgreSQL driver psycopg 3")
    made = []

    def make() -> str:
        schema = f"wlt_{os.getpid()}_{next(_SCHEMAS)}_{os.urandom(3).hex()}"
        with psycopg.connect(base, autocommit=True, connect_timeout=5) as c:
            c.execute(f'CREATE SCHEMA "{schema}"')
        made.append(schema)
        return _with_params(base, options=f"-csearch_path={schema}", application_name=schema)

    yield make
    with psycopg.connect(base, autocommit=True, connect_timeout=5) as c:
        for schema in made:
            # Connections a test left behind (a killed child's) go first, so DROP does not wait on their locks.
            c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
                      "AND pid <> pg_backend_pid()", (schema,))
            c.execute("SET lock_timeout = '5s'")
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class DB:
    """Where a test's outbox lives: a sqlite file or a PostgreSQL schema, with a way to read its tables."""

    def __init__(self, kind: str, tmp_path, postgres=None):
        self.kind = kind
        self._tmp = tmp_path
        self._postgres = postgres
        self._n = 0
        #: The first target (a path or a postgresql:// URL): ``Outbox(db.target)``.
        self.target = self.new()

    def new(self) -> str:
        """Another, empty target of the same kind."""
        self._n += 1
        if self.kind == "sqlite":
            return str(self._tmp / f"outbox-{self._n}.db")
        return self._postgres()

    def connect(self, target: Optional[str] = None):
        """A plain DB-API connection to a target (the first by default), autocommit off."""
        target = target or self.target
        if self.kind == "sqlite":
            import sqlite3

            return sqlite3.connect(target, timeout=10)
        import psycopg

        return psycopg.connect(target, connect_timeout=5)

    def rows(self, sql: str, *args, target: Optional[str] = None) -> list:
        """Run ``sql`` (``?`` placeholders) on a target and return its rows as tuples."""
        conn = self.connect(target)
        try:
            if self.kind == "postgres":
                sql = sql.replace("?", "%s")
                with conn.cursor() as cur:
                    cur.execute(sql, args or None)
                    return [tuple(r) for r in cur.fetchall()]
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """Each test that takes ``db`` runs on sqlite and on PostgreSQL (skipped, visibly, without one)."""
    if request.param == "postgres":
        return DB("postgres", tmp_path, request.getfixturevalue("postgres"))
    return DB("sqlite", tmp_path)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs mounted for the test (a disk that fills up), with ``fill()`` and ``free()``.

    Needs root (CI runs as root); skipped, visibly, otherwise.
    """
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("a full-disk test mounts a small tmpfs: needs root")
    where = tmp_path / "tiny"
    where.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0777", "tmpfs", str(where)],
                         capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        missing(f"cannot mount a tmpfs here: {out.stderr.strip()}")

    class Disk:
        path = where

        def fill(self) -> None:
            """Write a filler file until the disk is full."""
            with open(where / "filler", "ab", buffering=0) as f:
                for size in (65536, 512):  # then the last few blocks
                    try:
                        while True:
                            f.write(b"\0" * size)
                    except OSError:
                        pass

        def free(self) -> None:
            (where / "filler").unlink()

    try:
        yield Disk()
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10)


def _pg_bindir() -> Optional[str]:
    """Where initdb and pg_ctl are: $WEBHOOKLITE_TEST_PG_BIN, pg_config --bindir, /usr/lib/postgresql/*/bin."""
    import glob
    import shutil
    import subprocess

    candidates = [os.environ.get("WEBHOOKLITE_TEST_PG_BIN", "")]
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for d in candidates:
        if d and os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(os.path.join(d, "pg_ctl"), os.X_OK):
            return d
    return None


@pytest.fixture
def private_postgres():
    """A PostgreSQL cluster of the test's own (initdb in a temporary directory, another port), which
    the test may stop, start and restart: never the shared server. As root it runs as ``nobody``.

    Runs where PostgreSQL tests run (``WEBHOOKLITE_TEST_POSTGRES`` set) and the server programs exist.
    """
    import shutil
    import subprocess
    import tempfile

    need_service("WEBHOOKLITE_TEST_POSTGRES", "needs PostgreSQL")
    need_module("psycopg", "needs the PostgreSQL driver psycopg 3")
    bindir = _pg_bindir()
    if bindir is None:
        missing("needs PostgreSQL's initdb and pg_ctl for a private cluster (set WEBHOOKLITE_TEST_PG_BIN)")
    home = tempfile.mkdtemp(prefix="webhooklite-pg-")
    user = None
    if os.geteuid() == 0:  # initdb refuses root
        user = "nobody"
        shutil.chown(home, user=user)
        open(os.path.join(home, "server.log"), "w").close()
        shutil.chown(os.path.join(home, "server.log"), user=user)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    data = os.path.join(home, "data")

    logfile = os.path.join(home, "server.log")

    def pg(*args, timeout=60):
        # Output to the log file, never to a pipe: a server that pg_ctl starts keeps its stdout open.
        with open(logfile, "a") as log:
            out = subprocess.run(list(args), cwd=home, user=user, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {open(logfile).read()[-3000:]}")

    class Cluster:
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

        def start(self):
            pg(os.path.join(bindir, "pg_ctl"), "-D", data, "-l", logfile, "-w", "-t", "30",
               "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {home} -c fsync=off", "start")

        def stop(self, mode="fast"):
            pg(os.path.join(bindir, "pg_ctl"), "-D", data, "-m", mode, "-w", "stop")

        def restart(self):
            pg(os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "fast", "-w", "-t", "30",
               "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {home} -c fsync=off", "restart")

    cluster = Cluster()
    try:
        pg(os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        cluster.start()
        yield cluster
    finally:
        subprocess.run([os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"], cwd=home,
                       user=user, capture_output=True, timeout=30)
        shutil.rmtree(home, ignore_errors=True)
