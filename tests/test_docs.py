"""The docs are tests: every block and command in README.md and docs/*.md runs here, as typed wherever it can be.

- Every ```python block runs in a fresh interpreter, in a temporary folder. A framework
  recipe (Flask, Django, FastAPI) runs with the framework installed, then is served on a
  real loopback port and sent real deliveries; where the framework is missing it is
  skipped with the reason (``pip install -r tests/requirements-ci.txt``).
- Every ```sh block belongs to one test below (:data:`SH_TESTS`, by page and section),
  which runs each of its lines: long-running ones in the background on free ports.
  Commands are changed only where a test must: a free port for 8000 and 9000, a
  temporary folder for ``/var/lib/myapp/``, a fresh secret for ``whsec_...``, and the
  path to ``examples/`` when the command runs elsewhere. ``python3``, ``gunicorn``,
  ``waitress-serve`` and ``uvicorn`` are the test interpreter's (its folder comes
  first on PATH).
- A ```console block is a transcript pasted as it came: ``$ command`` lines, each followed by
  its output. One test per section (:data:`CONSOLE_TESTS`) runs the commands again and compares
  what they print with what is pasted, numbers, ids and column widths aside (times and ports differ
  from run to run; every word, column and line must be the same).
- A ```http block shows what goes on the wire; a test per section (:data:`HTTP_TESTS`) captures
  what the Sender really writes and compares it, line by line, values that change aside.
- A block that cannot run here says why, just above it: ``<!-- not run: why -->``. Keep those rare.
- Every relative link between the pages leads to a file that exists, and every ``#anchor`` to a
  heading of that page (GitHub's anchors); the CLI reference names every command and option
  that ``--help`` has, and no other.

The README's own tests (its opening commands, .ci/run, vendoring) are in test_readme.py.
"""
import http.client
import importlib.util
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import pytest

import webhooklite
from clitools import ENV, ROOT, Proc, blocks_for, free_port, sent_id, wait_for_port

#: Every page of the docs, by its path from the repository's root.
PAGE_NAMES = ["README.md"] + sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))
PAGES: Dict[str, str] = {name: (ROOT / name).read_text(encoding="utf-8") for name in PAGE_NAMES}
#: The commands' environment: the test interpreter's folder first on PATH, no example variable set.
SHELL_ENV = {k: v for k, v in ENV.items()
             if k not in ("WEBHOOK_SECRET", "WEBHOOK_DB", "GITHUB_WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET")}
SHELL_ENV["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
SHELL_ENV["COLUMNS"] = "80"
#: The secret the docs' own examples use (store_notify's built-in one).
DOCS_SECRET = "whsec_c3RvcmUtbm90aWZ5LWRlbW8tc2VjcmV0LTMyYnl0ZXM="
NEEDS = "pip install -r tests/requirements-ci.txt"
needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="the docs' commands are shell commands")


class Block(NamedTuple):
    page: str  #: README.md, docs/receiving.md...
    lang: str
    info: str  #: what follows the language on the fence line ("recipes")
    code: str
    line: int  #: where its fence is (1-based)
    section: str  #: the "# " or "## " heading it is under
    not_run: Optional[str]  #: why it cannot run, from a "<!-- not run: ... -->" line just above

    @property
    def where(self) -> str:
        return f"{self.page} line {self.line} ({self.section})"


def page_blocks(page: str, text: str) -> List[Block]:
    found, section = [], ""
    lines = text.split("\n")
    n = 0
    while n < len(lines):
        line = lines[n]
        if re.match(r"##? ", line):  # the title (its opening blocks), then each "## " section
            section = line.lstrip("#").strip()
        m = re.match(r"```(\w*) ?(.*)$", line)
        if m:
            end = lines.index("```", n + 1)
            above = lines[n - 1] if n else ""
            why = re.fullmatch(r"<!-- not run: (.+?) -->", above)
            found.append(Block(page, m.group(1), m.group(2), "\n".join(lines[n + 1:end]) + "\n", n + 1, section,
                               why.group(1) if why else None))
            n = end
        n += 1
    return found


BLOCKS = [b for page, text in PAGES.items() for b in page_blocks(page, text)]
PYTHON = [b for b in BLOCKS if b.lang == "python" and b.not_run is None]


def section_text(page: str, section: str) -> str:
    """The text of one "## " section of a page (the title's opening, for the title)."""
    out, inside = [], False
    for line in PAGES[page].split("\n"):
        if re.match(r"##? ", line):
            inside = line.lstrip("#").strip() == section
        elif inside:
            out.append(line)
    assert out, f"{page} has no section {section!r}"
    return "\n".join(out)


def sh_lines(page: str, section: str) -> List[str]:
    """The non-empty lines of the sh blocks of one section, in order."""
    return [line for b in BLOCKS if b.lang == "sh" and (b.page, b.section) == (page, section)
            for line in b.code.splitlines() if line.strip()]


def without_comment(line: str) -> str:
    return re.sub(r"\s+#\s.*$", "", line)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, within: float = 15) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(within)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise AssertionError("it did not stop on " + signal.Signals(sig).name) from None


# -- every block is run by a test, or says why it cannot be ------------------------------------

RECEIVING, SENDING, OUTBOX, INBOX = "docs/receiving.md", "docs/sending.md", "docs/outbox.md", "docs/inbox.md"
OPERATING, SECURITY, CLI = "docs/operating.md", "docs/security.md", "docs/cli.md"

#: Which test runs each section's sh blocks, by (page, section).
SH_TESTS: Dict[Tuple[str, str], str] = {
    ("README.md", "webhooklite"): "test_readme_opens_with_the_two_commands, test_store_example_command",
    (RECEIVING, "Providers: Stripe, GitHub and the examples"): "test_example_commands_of_the_providers_section",
    (RECEIVING, "Serving under gunicorn, waitress or uvicorn"): "test_wsgi_server_commands",
    (CLI, "Try it by hand"): "test_try_it_by_hand_walk_through",
    (OUTBOX, "A worker process"): "test_worker_process_one_liner",
    (INBOX, "Where handlers run"): "test_inbox_worker_command",
    (OPERATING, "The dashboard"): "test_dashboard_command",
}
#: Which test replays each section's console transcripts.
CONSOLE_TESTS: Dict[Tuple[str, str], str] = {
    (OPERATING, "The admin command line"): "test_operating_transcripts",
    (OPERATING, "Test your own endpoint: check"): "test_operating_transcripts",
}
#: Which test compares each section's http blocks with what goes on the wire.
HTTP_TESTS: Dict[Tuple[str, str], str] = {
    (SENDING, "Send one"): "test_wire_format",
}
FRAMEWORKS = ("flask", "django", "fastapi")


def framework(code: str) -> Optional[str]:
    m = re.search(rf"^(?:from|import) ({'|'.join(FRAMEWORKS)})\b", code, re.M)
    return m.group(1) if m else None


def _test_names() -> set:
    here = set(globals())
    there = set(re.findall(r"^def (test_\w+)", (ROOT / "tests" / "test_readme.py").read_text(), re.M))
    return here | there


def test_every_block_is_run_by_a_test_or_says_why_not():
    problems = []
    for b in BLOCKS:
        key = (b.page, b.section)
        if b.not_run is not None:
            if len(b.not_run) < 20:
                problems.append(f"{b.where}: say why it cannot run")
        elif b.lang == "sh":
            if key not in SH_TESTS:
                problems.append(f"{b.where}: an sh block no test runs: add one to test_docs.py's SH_TESTS")
        elif b.lang == "console":
            if key not in CONSOLE_TESTS:
                problems.append(f"{b.where}: a console transcript no test replays: add one to CONSOLE_TESTS")
            elif not b.code.startswith("$ "):
                problems.append(f"{b.where}: a console transcript starts with a `$ command` line")
        elif b.lang == "http":
            if key not in HTTP_TESTS:
                problems.append(f"{b.where}: an http block no test compares: add one to HTTP_TESTS")
        elif b.lang != "python":
            problems.append(f"{b.where}: a ```{b.lang} block no test runs: make it ```python or ```sh and run it")
    assert problems == []
    assert sum(b.not_run is not None for b in BLOCKS) <= 3, "keep blocks that cannot run rare"
    used = {k for b in BLOCKS for k in [(b.page, b.section)]}
    for table in (SH_TESTS, CONSOLE_TESTS, HTTP_TESTS):
        assert set(table) <= used, f"sections with no such block (renamed?): {set(table) - used}"
    names = {n.strip() for table in (SH_TESTS, CONSOLE_TESTS, HTTP_TESTS) for tests in table.values()
             for n in tests.split(",")}
    assert names <= _test_names(), names - _test_names()
    assert {framework(b.code) for b in PYTHON} >= set(FRAMEWORKS), "each framework's recipe is a python block"


def test_no_code_block_hides_as_an_indented_block():
    """An indented (4-space) block is not run by anything: every example is fenced, so a test sees it."""
    hidden = []
    for page, text in PAGES.items():
        in_fence, prev = False, ""
        for n, line in enumerate(text.split("\n"), 1):
            if line.startswith("```"):
                in_fence = not in_fence
            elif not in_fence and line.startswith("    ") and not prev.strip() and line.strip()[:1] not in "-|*":
                hidden.append(f"{page} line {n}: {line.strip()}")
            prev = line if not in_fence else "x"
    assert hidden == INDENTED_OK, hidden


#: The indented lines that are not code a test must run (each checked by the test named).
INDENTED_OK = ["README.md line %d: cp -r webhooklite myapp/_vendor/webhooklite"
               % (PAGES["README.md"].split("\n").index("    cp -r webhooklite myapp/_vendor/webhooklite") + 1)]


# -- python blocks ---------------------------------------------------------------------------

#: Run before a framework's recipe (what a project has configured already).
PRELUDE = {
    "django": """
import django
from django.conf import settings
settings.configure(ALLOWED_HOSTS=["127.0.0.1"], ROOT_URLCONF=__name__, SECRET_KEY="docs-test", DEBUG=False,
                   MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"])  # as in a new project
django.setup()
""",
}

#: Run before the block of one section (what the text says exists already), by (page, section).
SETUP: Dict[Tuple[str, str], str] = {
    (SECURITY, "TLS"): """
import subprocess
def _cert(name, *extra):  # what your CA gave you: a CA certificate, a client certificate and its key
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=" + name, "-keyout", name + ".key", "-out", name + ".pem",
                    *extra], check=True, capture_output=True)
_cert("internal-ca")
_cert("client")
""",
}

#: After a recipe: serve its app on a loopback port, as the framework's own server would, then check it.
SERVE = {
    "flask": """
from werkzeug.serving import make_server
def serve(wsgi_app):
    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"
server, base = serve(app)
check(base + "/webhooks", refuses_early=True)
server.shutdown()
# The inline alternative: mount the receiver beside the Flask app.
from werkzeug.middleware.dispatcher import DispatcherMiddleware
DISPATCHER_LINE
server, base = serve(app.wsgi_app)
check(base + "/webhooks", refuses_early=False, ids="mounted")
server.shutdown()
""",
    "django": """
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from django.core.wsgi import get_wsgi_application
class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass
server = make_server("127.0.0.1", 0, get_wsgi_application(), server_class=Server, handler_class=Quiet)
threading.Thread(target=server.serve_forever, daemon=True).start()
check(f"http://127.0.0.1:{server.server_port}/webhooks", refuses_early=False)
server.shutdown()
""",
    "fastapi": """
import uvicorn
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
thread.start()
deadline = time.monotonic() + 20
while not server.started:
    assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
    time.sleep(0.02)
check(f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks", refuses_early=True)
server.should_exit = True
thread.join(10)
""",
}

#: What every recipe must do once served: run the handler once, dedupe, refuse a forgery, refuse a big body.
CHECK = """
import os, socket, threading, time
import webhooklite as _w

def check(url, refuses_early, ids="plain"):
    secret = os.environ["WEBHOOK_SECRET"]
    with _w.Sender(url, secret, retry=_w.Retry(attempts=1), timeout=10) as sender:
        d = sender.send("payment.completed", {"item": "Blue T-Shirt"}, id="msg_" + ids)
        assert (d.status, d.response_body) == (200, b'{"status":"ok"}'), (d, d.error, d.response_body)
        d = sender.send("payment.completed", {"item": "Blue T-Shirt"}, id="msg_" + ids)
        assert (d.status, d.response_body) == (200, b'{"status":"duplicate"}'), (d, d.response_body)
    forged = _w.send(url, "payment.completed", {"item": "x"}, secret=_w.generate_secret(), retry=_w.Retry(attempts=1))
    assert forged.status == 401, (forged, forged.response_body)
    if refuses_early:  # a body over max_body is refused from its Content-Length, before it is sent
        host, port = url.split("/")[2].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"POST /webhooks HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\n"
                      b"Content-Length: %d\\r\\n\\r\\n" % (receiver.max_body + 1))
            answer = s.recv(4096)
        assert answer.split(b" ")[1] == b"413", answer
    print("checked", ids, flush=True)
"""


def python_block_code(block: Block) -> str:
    """The code a block runs as: itself (after its section's setup), or a framework recipe and its checks."""
    fw = framework(block.code)
    if fw is None:
        return SETUP.get((block.page, block.section), "") + block.code
    serve = SERVE[fw]
    if "DISPATCHER_LINE" in serve:
        line = re.search(r"`(app\.wsgi_app = DispatcherMiddleware\([^`]+\))`", PAGES[block.page]).group(1)
        serve = serve.replace("DISPATCHER_LINE", line)
    return PRELUDE.get(fw, "") + block.code + CHECK + serve


def run_python(code: str, tmp_path: Path, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env or SHELL_ENV,
                          capture_output=True, text=True, timeout=60)


def _block_id(b: Block) -> str:
    return f"{b.page.split('/')[-1][:-3]}-line{b.line}-{framework(b.code) or 'python'}"


@pytest.mark.parametrize("block", PYTHON, ids=[_block_id(b) for b in PYTHON])
def test_python_block_runs(block, tmp_path):
    fw = framework(block.code)
    if fw is not None:
        for module in (fw, "uvicorn") if fw == "fastapi" else (fw,):
            if importlib.util.find_spec(module) is None:
                pytest.skip(f"the {fw} recipe needs {module}, which is not installed here ({NEEDS})")
    if (block.page, block.section) == (SECURITY, "TLS") and shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: cannot make the certificates the block loads")
    env = dict(SHELL_ENV, WEBHOOK_SECRET=webhooklite.generate_secret())
    out = run_python(python_block_code(block), tmp_path, env)
    assert out.returncode == 0, f"{block.where} failed:\n{block.code}\n--- stderr:\n{out.stderr}"
    assert "Traceback" not in out.stderr, out.stderr
    if fw is not None:  # the handler ran once per id, and every check passed
        checked = ["plain", "mounted"] if fw == "flask" else ["plain"]
        assert re.findall(r"^checked (\w+)$", out.stdout, re.M) == checked, out.stdout
        assert out.stdout.count("New order! Blue T-Shirt") == len(checked), out.stdout


def one_block(page: str, section: str, lang: str = "python") -> Block:
    (block,) = [b for b in BLOCKS if (b.page, b.section, b.lang) == (page, section, lang)]
    return block


# -- what goes on the wire ---------------------------------------------------------------------


def test_wire_format(tmp_path):
    """The http block of "Send one" is what the Sender writes: the same lines, in the same order."""
    block = one_block(SENDING, "Send one", "http")
    shown = [re.sub(r"\s{2,}\(.*\)$", "", line) for line in block.code.rstrip("\n").split("\n")]
    head, body = shown[:shown.index("")], shown[shown.index("") + 1:]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(10)
    got: List[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
                re.search(rb"(?i)content-length: (\d+)", data).group(1)):
            data += conn.recv(65536)
        got.append(data)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    secret = webhooklite.generate_secret()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    data = {"order_id": "ABC123", "item": "Blue T-Shirt", "amount": 25.00}
    with webhooklite.Sender(url, secret, retry=webhooklite.Retry(attempts=1)) as sender:
        assert sender.send("payment.completed", data).ok
    t.join(10)
    listener.close()
    raw_head, raw_body = got[0].split(b"\r\n\r\n", 1)
    lines = raw_head.decode().split("\r\n")
    # What the block leaves out, as HTTP/1.1 needs it: Host and Content-Length.
    lines = [x for x in lines if not x.lower().startswith(("host:", "content-length:"))]

    def same(line: str) -> str:
        line = re.sub(r"msg_[\w-]+", "msg_X", line)
        line = re.sub(r"v1,<[^>]+>|v1,\S+", "v1,SIG", line)
        line = re.sub(r"\d{4}-\d\d-\d\dT[\d:]+Z", "TIME", line)
        return re.sub(r"\b\d{9,}\b", "TS", line)

    assert [same(x) for x in lines] == [same(x) for x in head]
    assert [same(raw_body.decode())] == [same(x) for x in body]
    assert f"webhooklite/{webhooklite.__version__}" in block.code
    webhooklite.verify(raw_body, dict(x.split(": ", 1) for x in lines[1:]), secret)


# -- links between the pages -------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*?|_(?=\w)|(?<=\w)_", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set:
    """Every anchor a page's headings make (GitHub numbers repeats: -1, -2...)."""
    seen: Dict[str, int] = {}
    out = set()
    in_fence = False
    for line in text.split("\n"):
        if line.startswith("```"):
            in_fence = not in_fence
        m = None if in_fence else re.match(r"#{1,6} (.+)$", line)
        if m:
            s = slug(m.group(1))
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return out


def links(text: str) -> List[Tuple[int, str]]:
    """(line, target) of each Markdown link and image outside code."""
    found, in_fence = [], False
    for n, line in enumerate(text.split("\n"), 1):
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        line = re.sub(r"`[^`]*`", "", line)
        found += [(n, m.group(1)) for m in re.finditer(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", line)]
    return found


def broken_links(root: Path, pages: Dict[str, str]) -> List[str]:
    """Every relative link of `pages` ({path: text}) to a file that does not exist, or to an anchor no heading makes."""
    broken = []
    for page, text in pages.items():
        for line, target in links(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ... not ours to check here
                continue
            path, _, anchor = target.partition("#")
            dest = (root / page).parent / path if path else root / page
            if not dest.exists():
                broken.append(f"{page} line {line}: {target}: no such file")
                continue
            if anchor:
                rel = dest.resolve().relative_to(root.resolve()).as_posix()
                text_there = pages.get(rel) if rel in pages else (
                    dest.read_text(encoding="utf-8") if dest.suffix == ".md" else None)
                if text_there is None or anchor not in anchors(text_there):
                    broken.append(f"{page} line {line}: {target}: no heading makes #{anchor}")
    return broken


def test_links_between_pages_lead_somewhere():
    assert broken_links(ROOT, PAGES) == []
    assert sum(len(links(t)) for t in PAGES.values()) > 40  # the pages do link to each other


def test_a_broken_link_fails(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "images").mkdir()
    (tmp_path / "docs" / "images" / "a.png").write_bytes(b"")
    pages = {
        "README.md": "# Title\n\n[ok](docs/a.md) [ok](docs/a.md#the-admin-cli-check) [gone](docs/b.md)\n"
                     "[no anchor](docs/a.md#nowhere) [self](#title) [self, wrong](#titel)\n"
                     "`[not a link](x.md)`\n```\n[in code](y.md)\n```\n[web](https://example.com/x.md)\n",
        "docs/a.md": "# A\n\n## The admin CLI: `check`\n\n![img](images/a.png) ![img](images/b.png) "
                     "[up](../README.md#title) [a](#a)\n",
    }
    for name, text in pages.items():
        (tmp_path / name).write_text(text)
    assert broken_links(tmp_path, pages) == [
        "README.md line 3: docs/b.md: no such file",
        "README.md line 4: docs/a.md#nowhere: no heading makes #nowhere",
        "README.md line 4: #titel: no heading makes #titel",
        "docs/a.md line 5: images/b.png: no such file",
    ]
    assert slug("Receive now, handle later (inbox)") == "receive-now-handle-later-inbox"
    assert slug("Test your own endpoint: `check`") == "test-your-own-endpoint-check"
    assert anchors("# A\n## B\n## B\n") == {"a", "b", "b-1"}


def test_every_page_is_linked_from_the_readme_and_starts_with_its_problem():
    readme_links = {t.partition("#")[0] for _, t in links(PAGES["README.md"])}
    for page in PAGE_NAMES[1:]:
        assert page in readme_links, f"the README's table of topics does not link {page}"
        lines = [x for x in PAGES[page].split("\n") if x.strip()]
        assert lines[0].startswith("# "), f"{page} starts with its title"
        assert not lines[1].startswith(("#", "```", "|")), f"{page}: the title is followed by the problem it solves"


# -- the CLI reference -------------------------------------------------------------------------


def _commands():
    """(command path, its option strings and positionals) for every command ``--help`` lists."""
    import argparse

    from webhooklite.cli import build_parser

    out = []

    def walk(parser: argparse.ArgumentParser, path: Tuple[str, ...]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        opts = set()
        for a in parser._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            opts |= {s for s in a.option_strings if s.startswith("--")} or {a.metavar or a.dest.upper()}
        if path:
            out.append((path, opts))
        for s in subs:
            for name, sub in s.choices.items():
                walk(sub, path + (name,))

    walk(build_parser("python -m webhooklite"), ())
    return out


def test_the_cli_reference_has_every_command_and_option():
    text = PAGES[CLI]
    sections = {}
    for m in re.finditer(r"^### `([^`]+)`\n(.*?)(?=^##|\Z)", text, re.M | re.S):
        sections[m.group(1)] = m.group(2)
    missing, stale = [], []
    commands = _commands()
    for path, opts in commands:
        name = " ".join(path) if path[0] not in ("outbox", "inbox") or len(path) == 1 else f"{path[0]} DB {path[1]}"
        if name not in sections:
            missing.append(f"no section ### `{name}`")
            continue
        for o in opts:
            if o.startswith("--") and not re.search(rf"`{re.escape(o)}\b", sections[name]):
                missing.append(f"{name}: {o}")
        documented = set(re.findall(r"^\| `(--[\w-]+)", sections[name], re.M))
        stale += [f"{name}: {o} (not an option)" for o in documented - opts]
    assert missing == [] and stale == []
    names = {" ".join(p) if p[0] not in ("outbox", "inbox") or len(p) == 1 else f"{p[0]} DB {p[1]}" for p, _ in commands}
    assert set(sections) == names, set(sections) ^ names


# -- the examples' --demo commands -------------------------------------------------------------


def test_example_commands_of_the_providers_section():
    lines = sh_lines(RECEIVING, "Providers: Stripe, GitHub and the examples")
    expected = {  # what each prints when it worked
        "github_receiver.py": "issue #42 opened in octo-org/shop",
        "stripe_receiver.py": "succeeded: $25.00 USD for order ABC123",
        "slack_notify.py": "Slack answered 200 'ok'",
        "signup_email.py": "Subject: Thanks for signing up, Jane!",
        "fastapi_app.py": 'app answered 200, then 200 {"status":"duplicate"}',
    }
    assert [re.search(r"examples/(\w+\.py)", line).group(1) for line in lines] == list(expected)
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.skip(f"examples/fastapi_app.py needs fastapi and uvicorn ({NEEDS})")
    procs = [subprocess.Popen(["bash", "-c", without_comment(line)], cwd=ROOT, env=SHELL_ENV, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for line in lines]  # at once
    for line, proc, words in zip(lines, procs, expected.values()):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and words in out and "Traceback" not in err, (line, out, err)


# -- the CLI walk-through, with its three terminals --------------------------------------------


@needs_bash
def test_try_it_by_hand_walk_through(tmp_path):
    commands = sh_lines(CLI, "Try it by hand")
    # (what it is, what it must end with): keep in step with docs/cli.md.
    expected = ["listen", 0, 1, "listen", (0, 1), "notifier", "listen", 0, 0, 0]
    kinds = ["listen" if " listen " in c else "notifier" if "notifier" in c else c.split()[3] for c in commands]
    assert kinds == ["listen", "send", "send", "listen", "send", "notifier", "listen", "send", "verify", "replay"]
    app_port = str(free_port())

    def shell(cmd: str, url: Optional[str]) -> str:
        # Run in a fresh folder (deliveries/ goes there): the examples are in the checkout.
        cmd = cmd.replace(" examples/", f" {shlex.quote(str(ROOT))}/examples/")
        cmd = cmd.replace("--port 8000", "--port 0").replace("9000", app_port)
        return cmd.replace("http://127.0.0.1:8000/", url) if url else cmd

    listens: List[Proc] = []
    notifier: Optional[Proc] = None
    url = None
    sends = []  # (listen, message id, attempts, exit status)
    try:
        for kind, cmd, want in zip(kinds, commands, expected):
            if kind == "listen":
                if listens:  # "stop the listener (Ctrl-C)"
                    assert listens[-1].stop() == 0, listens[-1].stderr
                listens.append(Proc(["bash", "-c", "exec " + shell(cmd, None)], cwd=tmp_path, env=SHELL_ENV))
                url = listens[-1].line().strip()
                assert url.startswith("http://127.0.0.1:"), url
            elif kind == "notifier":
                notifier = Proc(["bash", "-c", "exec " + shell(cmd, None)], cwd=tmp_path, env=SHELL_ENV)
                assert "waiting for orders" in notifier.line()
                wait_for_port(int(app_port), notifier.proc)  # it prints before it binds
            else:
                out = subprocess.run(["bash", "-c", shell(cmd, url)], capture_output=True, text=True,
                                     timeout=30, cwd=tmp_path, env=SHELL_ENV)
                assert out.returncode in (want if isinstance(want, tuple) else (want,)), (cmd, out.stdout, out.stderr)
                assert "Traceback" not in out.stderr
                if kind == "send":
                    msg_id = sent_id(out.stdout)
                    attempts = int(re.search(r"attempts: (\d+)", out.stdout).group(1))
                    listens[-1].blocks(msg_id, attempts)
                    sends.append((listens[-1], msg_id, attempts, out.returncode))
        assert notifier is not None
        notifier.wait_for("New order! Item: Blue T-Shirt, $25. Customer: Jane D.")
        time.sleep(0.1)
        assert listens[-1].stop() == 0
        assert notifier.stop() == 0
        # Terminal 1 explained the second send's bad signature...
        ((_, bad_id, _, _),) = [s for s in sends if s[3] == 1 and s[0] is listens[0]]
        (block,) = blocks_for(listens[0].output, bad_id)
        assert "BAD SIGNATURE: signature does not match" in block
        # ... showed every attempt of the retried one ...
        ((retried, retry_id, attempts, _),) = [s for s in sends if s[0] is listens[1]]
        assert len(blocks_for(retried.output, retry_id)) == attempts
        # ... and the notifier got the forwarded send, then the replay (a new id: not a duplicate).
        assert notifier.output.count("New order! Item: Blue T-Shirt, $25. Customer: Jane D.") == 2
        assert "from http://127.0.0.1:" + app_port in listens[-1].output
        assert len(list((tmp_path / "deliveries").glob("*.json"))) == 1
    finally:
        for p in listens + [notifier]:
            if p is not None:
                p.kill()


@needs_bash
def test_v1a_key_pair_command():
    """docs/cli.md: `secret --v1a` prints the whsk_ key, then the whpk_ key, and they work as the text says."""
    out = subprocess.run([sys.executable, "-m", "webhooklite", "secret", "--v1a"], env=SHELL_ENV,
                         capture_output=True, text=True, timeout=30)
    sk, pk = out.stdout.split()
    assert sk.startswith("whsk_") and pk.startswith("whpk_") and "`secret --v1a`" in PAGES[CLI]
    headers = webhooklite.sign(b"{}", sk, msg_id="msg_1")
    assert webhooklite.verify(b"{}", headers, pk).id == "msg_1"


# -- the outbox's worker process ---------------------------------------------------------------


@needs_bash
def test_worker_process_one_liner(tmp_path):
    (line,) = sh_lines(OUTBOX, "A worker process")
    assert "/var/lib/myapp/" in line
    cmd = line.replace("/var/lib/myapp/", f"{tmp_path}/")  # a folder of the test's own
    secret = webhooklite.generate_secret()
    receiver = webhooklite.Receiver(secret)
    got: List[str] = []
    receiver.on("payment.completed", lambda event: got.append(event["order_id"]))
    with receiver.start() as server:
        # The app only calls send(); the worker delivers.
        with webhooklite.Outbox(tmp_path / "webhooks.db") as outbox:
            outbox.add_endpoint(server.url, secret=secret)
            outbox.send("payment.completed", {"order_id": "ABC123"})
        worker = subprocess.Popen(["bash", "-c", "exec " + cmd], cwd=tmp_path, env=SHELL_ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 20
            while not got:
                assert worker.poll() is None, worker.communicate()
                assert time.monotonic() < deadline, "the worker delivered nothing"
                time.sleep(0.05)
        finally:
            code = stop(worker, signal.SIGTERM)  # "it stops cleanly on Ctrl-C or SIGTERM"
        out, err = worker.communicate()
    assert got == ["ABC123"]
    assert code == 0 and "Traceback" not in err, (code, err)
    with webhooklite.Outbox(tmp_path / "webhooks.db") as outbox:
        assert outbox.stats()[1]["delivered"] == 1


# -- the inbox's worker process ----------------------------------------------------------------

MYAPP = """
import os, webhooklite
receiver = webhooklite.Receiver(os.environ["WEBHOOK_SECRET"], inbox=webhooklite.Inbox("inbox.db", autostart=False))

@receiver.on("payment.completed")
def thank_you(event):
    with open("handled.txt", "a") as f:
        f.write(event["order_id"] + "\\n")
"""


@needs_bash
def test_inbox_worker_command(tmp_path):
    (line,) = sh_lines(INBOX, "Where handlers run")
    secret = webhooklite.generate_secret()
    (tmp_path / "myapp.py").write_text(MYAPP)
    env = dict(SHELL_ENV, WEBHOOK_SECRET=secret)
    app = subprocess.run([sys.executable, "-c", (
        "import myapp, webhooklite\n"
        "with myapp.receiver.start() as server:\n"
        "    d = webhooklite.send(server.url, 'payment.completed', {'order_id': 'ABC123'}, secret=%r)\n"
        "    print(d.status)\n" % secret)],
        cwd=tmp_path, env=dict(env, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}"), capture_output=True, text=True, timeout=30)
    assert app.stdout.split() == ["202"], app.stderr  # stored by the web app, which runs no handler
    assert not (tmp_path / "handled.txt").exists()
    worker = subprocess.Popen(["bash", "-c", "exec " + line], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "handled.txt").exists():
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "the worker ran no handler"
            time.sleep(0.05)
    finally:
        code = stop(worker, signal.SIGTERM)
    out, err = worker.communicate()
    assert (tmp_path / "handled.txt").read_text() == "ABC123\n"
    assert code == 0 and "Traceback" not in err, (code, err)


@needs_bash
def test_dashboard_command(tmp_path):
    (line,) = sh_lines(OPERATING, "The dashboard")
    assert "--port 8080" in line
    with webhooklite.Outbox(str(tmp_path / "webhooks.db")) as outbox:
        outbox.add_endpoint("https://example.com/hooks", secret=webhooklite.generate_secret())
    port = free_port()
    proc = Proc(["bash", "-c", "exec " + without_comment(line).replace("8080", str(port))], cwd=tmp_path, env=SHELL_ENV)
    try:
        url = proc.line().strip()
        assert re.fullmatch(rf"http://127\.0\.0\.1:{port}/\?token=[\w-]{{43}}", url), url
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        r = conn.getresponse()
        assert r.status == 401 and b"example.com" not in r.read()
        conn.request("GET", url.split(str(port), 1)[1])  # the printed URL: a cookie, then the page
        r = conn.getresponse()
        r.read()
        assert r.status == 303
        conn.request("GET", "/", headers={"Cookie": r.getheader("Set-Cookie").split(";")[0]})
        r = conn.getresponse()
        assert r.status == 200 and b"https://example.com/hooks" in r.read()
        conn.close()
    finally:
        code = proc.stop(signal.SIGTERM)
    assert code == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_dashboard_screenshots_are_shown():
    shown = sorted(set(re.findall(r"\(images/(dashboard-[a-z]+\.png)\)", PAGES[OPERATING])))
    assert shown == sorted(p.name for p in (ROOT / "docs" / "images").glob("dashboard-*.png")) and len(shown) == 6


# -- gunicorn and waitress ---------------------------------------------------------------------

GUNICORN_LINES = sh_lines(RECEIVING, "Serving under gunicorn, waitress or uvicorn")


def _server_lines() -> List[str]:
    assert GUNICORN_LINES[0].startswith("export ")
    return GUNICORN_LINES[1:]


@needs_bash
@pytest.mark.parametrize("line", _server_lines(), ids=[c.split()[0] + str(n) for n, c in enumerate(_server_lines())])
def test_wsgi_server_commands(line, tmp_path):
    server = line.split()[0]
    if server in ("gunicorn", "waitress-serve"):
        module = server.split("-")[0]
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed here ({NEEDS})")
    secret = webhooklite.generate_secret()
    export = GUNICORN_LINES[0].replace("whsec_...", secret).replace("/var/lib/myapp/", f"{tmp_path}/")
    assert secret in export and str(tmp_path) in export
    if server == "python3":  # the demo: no server to talk to
        out = subprocess.run(["bash", "-c", f"{export}\n{without_comment(line)}"], cwd=ROOT, env=SHELL_ENV,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
        assert re.findall(r"-> worker \d: 200 (.*)", out.stdout) == ['{"status":"ok"}', '{"status":"duplicate"}']
        assert out.stdout.count("New order! Item: Blue T-Shirt") == 1
        return
    port = free_port()
    assert "127.0.0.1:8000" in line
    cmd = line.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    proc = subprocess.Popen(["bash", "-c", f"{export}\nexec {cmd}"], cwd=ROOT, env=SHELL_ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc)
        url = f"http://127.0.0.1:{port}/"
        with webhooklite.Sender(url, secret, retry=webhooklite.Retry(attempts=1), timeout=10) as sender:
            order = {"item": "Blue T-Shirt", "customer": "Jane D."}
            first = sender.send("payment.completed", order, id="msg_wsgi")
            assert (first.status, first.response_body) == (200, b'{"status":"ok"}'), (first, first.error)
            for _ in range(3):  # retries, on whichever worker: handled once
                again = sender.send("payment.completed", order, id="msg_wsgi")
                assert (again.status, again.response_body) == (200, b'{"status":"duplicate"}'), again
        forged = webhooklite.send(url, "payment.completed", order, secret=webhooklite.generate_secret())
        assert forged.status == 401
        # "gunicorn answers 413 from the Content-Length before reading the body"; waitress with its option.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
            assert s.recv(4096).split(b" ")[1] == b"413"
        # "Chunked bodies work under gunicorn and waitress."
        body = webhooklite.events.encode_event("payment.completed", {"item": "Blue T-Shirt", "customer": "Jane D."})
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = dict(webhooklite.sign(body, secret, msg_id="msg_chunked"), **{"Content-Type": "application/json"})
        conn.request("POST", "/", body=iter([body[:10], body[10:]]), headers=headers, encode_chunked=True)
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b'{"status":"ok"}')
        conn.close()
    finally:
        # gunicorn: a worker still booting when the master passes SIGTERM on swallows it (the
        # master's handler is still installed in it until the worker sets its own), and the master
        # then waits out its graceful timeout, 30 s, before SIGKILL. Seen on a loaded 2-core CI.
        code = stop(proc, signal.SIGTERM, within=40) if server == "gunicorn" else stop(proc, signal.SIGINT)
        out, err = proc.communicate()
    assert out.count("New order! Item: Blue T-Shirt. Customer: Jane D.") == 2, out + err  # msg_wsgi, msg_chunked
    assert "Traceback" not in err, err
    if server == "gunicorn":
        assert code == 0, err


# -- console transcripts -----------------------------------------------------------------------


def transcript(block: Block) -> List[tuple]:
    """A console block as (command, the lines it printed) pairs."""
    steps: List[tuple] = []
    for line in block.code.rstrip("\n").split("\n"):
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


def same_but_numbers(line: str) -> str:
    """A line with what differs from run to run made equal: numbers, message ids, column widths."""
    line = re.sub(r"msg_[\w-]+", "msg_X", line)
    line = re.sub(r"\d+(\.\d+)?", "N", line)
    return " ".join(line.split())


def replay_transcript(block: Block, cwd: Path, replace=lambda cmd: cmd) -> None:
    for command, pasted in transcript(block):
        out = subprocess.run(["bash", "-c", replace(command)], cwd=cwd, env=SHELL_ENV, capture_output=True,
                             text=True, timeout=60)
        got = (out.stdout + out.stderr).rstrip("\n").split("\n") if (out.stdout + out.stderr) else []
        assert [same_but_numbers(x) for x in got] == [same_but_numbers(x) for x in pasted], (
            f"{block.where}: `{command}` now prints:\n" + "\n".join(got))


@needs_bash
def test_operating_transcripts(tmp_path):
    setup = one_block(OPERATING, "Endpoint health and callbacks")
    health = one_block(OPERATING, "The admin command line", "console")
    check = one_block(OPERATING, "Test your own endpoint: check", "console")
    # The outbox the python block leaves in its folder, then the operator's commands on it.
    out = run_python(setup.code, tmp_path)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert re.findall(r"^(dead|disabled): ", out.stdout, re.M) == ["dead", "disabled"], out.stdout
    replay_transcript(health, tmp_path)
    # check, against the notifier the text says to start in another terminal.
    notifier_cmd = "python3 examples/store_notify.py notifier --port 8000 --demo"
    assert f"`{notifier_cmd}` in another terminal" in " ".join(PAGES[OPERATING].split())
    port = str(free_port())
    notifier = Proc(["bash", "-c", "exec " + notifier_cmd.replace("8000", port)], cwd=ROOT, env=SHELL_ENV)
    try:
        wait_for_port(int(port), notifier.proc)
        replay_transcript(check, tmp_path, lambda cmd: cmd.replace("127.0.0.1:8000", "127.0.0.1:" + port))
    finally:
        notifier.kill()


# -- inline commands ---------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("uvicorn") is None, reason=f"uvicorn is not installed here ({NEEDS})")
@needs_bash
def test_uvicorn_inline_command(tmp_path):
    cmd = re.search(r"`(uvicorn myapp:receiver\.asgi[^`]*)`", PAGES[RECEIVING]).group(1)
    (tmp_path / "myapp.py").write_text('import os\nimport webhooklite\n\n'
                                       'receiver = webhooklite.Receiver(os.environ["WEBHOOK_SECRET"])\n'
                                       'receiver.on("*", lambda event: print("got", event.id, flush=True))\n')
    secret, port = webhooklite.generate_secret(), free_port()
    proc = subprocess.Popen(["bash", "-c", f"exec {cmd} --port {port}"], cwd=tmp_path, text=True,
                            env=dict(SHELL_ENV, WEBHOOK_SECRET=secret), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc)
        url = f"http://127.0.0.1:{port}/"
        with webhooklite.Sender(url, secret) as sender:
            assert sender.send("ping", {}, id="msg_uvicorn").status == 200
        assert webhooklite.send(url, "ping", {}, secret=webhooklite.generate_secret()).status == 401
    finally:
        code = stop(proc, signal.SIGINT)
        out, err = proc.communicate()
    assert "got msg_uvicorn" in out and code == 0, (code, out, err)


# -- what the repository's text points to is in the repository --------------------------

#: Files that still point to a document the repository does not have, and whose owner
#: (another branch) removes the reference; the lead deletes the entry at the merge.
POINTS_OUTSIDE: dict = {}


def _texts():
    for folder in ("webhooklite", "tests", "examples", "benchmarks", "docs"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".md", ".sh", ".lua", ".txt") and "__pycache__" not in path.parts:
                yield path
    yield ROOT / "README.md"
    yield ROOT / "CHANGELOG.md"


def test_every_document_and_module_the_text_names_is_in_the_repository():
    """A comment that says "see SOMETHING.md" or "the format is in webhooklite/x.py" must lead somewhere."""
    missing = []
    for path in _texts():
        rel = path.relative_to(ROOT).as_posix()
        if rel in ("tests/test_readme.py", "tests/test_docs.py"):
            continue  # these name them to check them
        text = path.read_text(encoding="utf-8")
        for name in sorted(set(re.findall(r"(?<![\w/.:-])((?:[\w.-]+/)*[A-Z][A-Z_-]*\.md)\b", text))):
            if not ((ROOT / name).exists() or (path.parent / name).exists()) and POINTS_OUTSIDE.get(rel) != name:
                missing.append(f"{rel} names {name}")
        for name in sorted(set(re.findall(r"\b(webhooklite/[\w/]+\.py)\b", text))):
            if not (ROOT / name).exists():
                missing.append(f"{rel} names {name}")
    assert missing == []
    for rel, name in POINTS_OUTSIDE.items():
        assert name in (ROOT / rel).read_text(encoding="utf-8"), f"{rel} no longer names {name}: drop the entry"


def test_headers_exports_only_what_the_package_uses():
    import webhooklite.headers

    others = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "webhooklite").rglob("*.py")
                     if p.name != "headers.py")
    unused = [name for name in webhooklite.headers.__all__ if not re.search(rf"\b{name}\b", others)]
    assert unused == []
