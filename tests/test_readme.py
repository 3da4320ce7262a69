"""The README's own promises: it opens with the two commands, CI runs its test command, one screen holds
what a newcomer came for, and the folder can be copied.

Every block of the README (and of docs/*.md) runs in test_docs.py; this file checks what is the
README's alone.
"""
import re
import shutil
import subprocess
import sys

import pytest

from clitools import ROOT, Proc, free_port
from clitools import wait_for_port
from test_docs import BLOCKS, SHELL_ENV, needs_bash, run_python, sh_lines

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_opens_with_the_two_commands():
    first = sh_lines("README.md", "webhooklite")
    assert first[0] == "python3 examples/store_notify.py"
    assert "pytest" in first[1] and len(first) == 2
    assert README.split("\n")[:8].count("```sh") == 1, "the two commands come first, before anything else"
    ci = (ROOT / ".ci" / "run").read_text()
    assert first[1] in ci, ".ci/run must call the README's test command exactly (CI runs it: not here)"


def test_one_screen_holds_the_commands_and_the_three_snippets():
    """What it is, the two commands, and send one / receive one / send durably, before anything else."""
    lines = README.split("\n")
    sections = [line[3:] for line in lines if line.startswith("## ")]
    assert sections[:3] == ["Send one", "Receive one", "Send durably (outbox)"], sections
    blocks = [b for b in BLOCKS if b.page == "README.md"]
    assert [b.lang for b in blocks[:4]] == ["sh", "python", "python", "python"]
    assert [b.section for b in blocks[1:4]] == sections[:3]
    end = lines.index("## " + sections[3])
    assert end <= 75, f"the commands and the three snippets take {end} lines: keep them on one screen"
    assert all(len(b.code.strip().split("\n")) <= 12 for b in blocks[1:4]), "a few lines each"
    assert "(CHANGELOG.md)" in README


def test_store_example_command():
    out = subprocess.run(["bash", "-c", sh_lines("README.md", "webhooklite")[0]], cwd=ROOT, env=SHELL_ENV,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "New order! Item: Blue T-Shirt, $25. Customer: Jane D." in out.stdout


@needs_bash
def test_store_example_in_two_terminals():
    m = re.search(r"To try it in two terminals: `(python3 examples/store_notify\.py notifier[^`]*)`, then\s+"
                  r"`(python3 examples/store_notify\.py store[^`]*)`", README)
    notifier_cmd, store_cmd = m.groups()
    port = str(free_port())  # both default to 8000
    notifier = Proc(["bash", "-c", f"exec {notifier_cmd} --port {port}"], cwd=ROOT, env=SHELL_ENV)
    try:
        assert "waiting for orders" in notifier.line()
        wait_for_port(int(port), notifier.proc)
        store = subprocess.run(["bash", "-c", f"{store_cmd} --port {port}"], cwd=ROOT, env=SHELL_ENV,
                               capture_output=True, text=True, timeout=30)
        assert store.returncode == 0, store.stderr
        assert "notifier answered 200" in store.stdout
        notifier.wait_for("New order! Item: Blue T-Shirt, $25. Customer: Jane D.")
        assert notifier.stop() == 0 and "Traceback" not in notifier.stderr
    finally:
        notifier.kill()


def test_vendoring_commands(tmp_path):
    assert "    cp -r webhooklite myapp/_vendor/webhooklite\n" in README
    assert "`from myapp._vendor import webhooklite`" in README
    (tmp_path / "myapp" / "_vendor").mkdir(parents=True)  # your project
    shutil.copytree(ROOT / "webhooklite", tmp_path / "myapp" / "_vendor" / "webhooklite",
                    ignore=shutil.ignore_patterns("__pycache__"))  # cp -r, from the checkout
    env = {k: v for k, v in SHELL_ENV.items() if k != "PYTHONPATH"}  # only the copy can be imported
    out = run_python("from myapp._vendor import webhooklite\n"
                     "assert webhooklite.__name__ == 'myapp._vendor.webhooklite'\n"
                     "s = webhooklite.generate_secret()\n"
                     "assert webhooklite.verify(b'{}', webhooklite.sign(b'{}', s, msg_id='m'), s)\n", tmp_path, env)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([sys.executable, "-m", "myapp._vendor.webhooklite", "secret"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("whsec_"), out.stderr


@pytest.mark.parametrize("figure", re.findall(r"\b\d+(?:\.\d+)?×", README) or ["none"])
def test_every_ratio_in_the_comparison_is_in_a_committed_result(figure):
    """The README quotes measured ratios: each one is in benchmarks/README.md or benchmarks/results/*.md."""
    assert figure != "none", "the README compares webhooklite with what people use instead, with ratios"
    number = figure[:-1]
    results = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8") + "".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "benchmarks" / "results").glob("*.md"))
    assert re.search(rf"(?<![\d.]){re.escape(number)}0*(?:x|×)", results), f"{figure} is in no committed result"
