"""Running the command line and the examples as a user does: background processes read line by line.

Shared by test_cli.py, test_docs.py, test_readme.py, test_examples.py and test_inbox_processes.py.
"""
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
#: The environment of every command: no NO_COLOR (tests decide), this checkout on the path.
ENV = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
ENV["PYTHONPATH"] = str(ROOT)
CMD = [sys.executable, "-m", "webhooklite"]


class Proc:
    """A long-running command whose stdout is read line by line in the background."""

    def __init__(self, argv: List[str], cwd: Path = ROOT, env: Optional[Dict[str, str]] = None) -> None:
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env or ENV
        )
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.seen: List[str] = []
        self.err: List[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.err.append), daemon=True).start()

    @staticmethod
    def _pump(stream, put) -> None:
        for line in stream:
            put(line)
        put(None)

    def line(self, timeout: float = 10) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output in {timeout} s; so far: {''.join(self.seen)!r}") from None
        assert line is not None, f"the process ended: {''.join(self.seen)!r} {''.join(self.err)!r}"
        self.seen.append(line)
        return line

    def wait_for(self, text: str, timeout: float = 10) -> str:
        """Read until `text` has been printed; return everything printed so far."""
        deadline = time.monotonic() + timeout
        while text not in "".join(self.seen):
            self.line(max(0.01, deadline - time.monotonic()))
        return "".join(self.seen)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        while True:  # the rest of the output
            try:
                line = self.lines.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
        return code

    def blocks(self, msg_id: str, count: int = 1, timeout: float = 10) -> List[str]:
        """Wait until `count` whole delivery blocks for `msg_id` are printed; return them all."""
        deadline = time.monotonic() + timeout
        while True:
            found = blocks_for("\n\n".join(self.output.split("\n\n")[:-1]), msg_id)  # whole blocks only
            if len(found) >= count:
                return found
            self.line(max(0.01, deadline - time.monotonic()))

    @property
    def output(self) -> str:
        return "".join(self.seen)

    @property
    def stderr(self) -> str:
        return "".join(e for e in self.err if e is not None)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def blocks_for(output: str, msg_id: str) -> List[str]:
    """The delivery blocks listen printed for one message id."""
    return [b for b in output.split("\n\n") if msg_id in b.split("\n", 1)[0]]


def sent_id(stdout: str) -> str:
    return re.search(r"id: (msg_[\w-]+)", stdout).group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: Optional[subprocess.Popen] = None, timeout: float = 20,
                  output: bool = False) -> None:
    """Wait until something listens on ``port``; fail when ``proc`` exits first or ``timeout`` passes,
    with its stdout and stderr in the message when ``output`` (when nothing else reads them)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            exited = proc is not None and proc.poll() is not None
            if exited or time.monotonic() > deadline:
                what = f"the server exited ({proc.returncode})" if exited else f"nothing listened in {timeout} s"
                if output and proc is not None:
                    if not exited:
                        proc.kill()
                    out, err = proc.communicate(timeout=5)
                    what += f":\n{out}\n{err}"
                raise AssertionError(f"{what} (port {port})")
            time.sleep(0.05)


