"""The README is a test: its two commands and every Python block run as typed."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def run_python(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )


def test_readme_opens_with_the_two_commands():
    first = re.search(r"```sh\n(.*?)```", README, flags=re.S).group(1).strip().splitlines()
    assert first[0] == "python3 examples/store_notify.py"
    assert "pytest" in first[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert first[1] in ci, ".ci/run must call the README's test command exactly"


def test_store_example_command():
    out = subprocess.run(
        [sys.executable, "examples/store_notify.py"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert "New order! Item: Blue T-Shirt, $25. Customer: Jane D." in out.stdout


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code, tmp_path):
    out = run_python(code, tmp_path)
    assert out.returncode == 0, f"README block failed:\n{code}\n--- stderr:\n{out.stderr}"
    assert "Traceback" not in out.stderr


def test_store_example_in_two_terminals():
    import socket
    import time

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = str(s.getsockname()[1])
    s.close()
    notifier = subprocess.Popen(
        [sys.executable, "examples/store_notify.py", "notifier", "--demo", "--port", port],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert "waiting for orders" in notifier.stdout.readline()
        deadline = time.monotonic() + 10
        while True:  # the notifier may take a moment to bind
            store = subprocess.run(
                [sys.executable, "examples/store_notify.py", "store", "--demo", "--port", port],
                cwd=ROOT, capture_output=True, text=True, timeout=30,
            )
            if store.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert store.returncode == 0, store.stderr
        assert "notifier answered 200" in store.stdout
        assert notifier.stdout.readline().strip() == "New order! Item: Blue T-Shirt, $25. Customer: Jane D."
        notifier.send_signal(__import__("signal").SIGINT)
        assert notifier.wait(timeout=10) == 0
        assert "Traceback" not in notifier.stderr.read()
    finally:
        notifier.kill()
        notifier.wait()


# -- what the repository's text points to is in the repository --------------------------

#: Files that still point to a document the repository does not have, and whose owner
#: (another branch) removes the reference; the lead deletes the entry at the merge.
POINTS_OUTSIDE = {"webhooklite/sender.py": "DESIGN.md"}


def _texts():
    for folder in ("webhooklite", "tests", "examples", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".md", ".sh", ".lua", ".txt") and "__pycache__" not in path.parts:
                yield path
    yield ROOT / "README.md"


def test_every_document_and_module_the_text_names_is_in_the_repository():
    """A comment that says "see SOMETHING.md" or "the format is in webhooklite/x.py" must lead somewhere."""
    missing = []
    for path in _texts():
        rel = path.relative_to(ROOT).as_posix()
        if rel == "tests/test_readme.py":
            continue  # this file names them to check them
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
