"""Many hosts on one PostgreSQL, proved with processes: 1,000 messages, three workers, one SIGKILLed.

The workers are processes on this machine. To the database they are three hosts (three sets of
connections over TCP, three tokens); network namespaces (``ip netns`` + veth) would add separate
network stacks but nothing the claims depend on, so they are left out to keep CI fast.
"""
import collections
import signal
import subprocess
import threading

import webhooklite
from test_outbox import python, raw, read_line, wait_until  # noqa: F401


class Watched:
    """A receiver (dedupe on) that counts handler runs and HTTP requests per message id, and notes any
    id that arrived while the same id was still being answered (sent twice at once)."""

    def __init__(self, secret, delay=0.0):
        self.receiver = webhooklite.Receiver(secret)
        self.runs = collections.Counter()
        self.requests = collections.Counter()
        self.inflight = set()
        self.overlaps = []
        self.lock = threading.Lock()

        @self.receiver.on("*")
        def handle(event):
            if delay:
                __import__("time").sleep(delay)
            with self.lock:
                self.runs[event.id] += 1

    def __call__(self, path, headers, body):
        mid = headers.get("webhook-id")
        with self.lock:
            if mid in self.inflight:
                self.overlaps.append(mid)
            self.inflight.add(mid)
            self.requests[mid] += 1
        try:
            answer = self.receiver.handle("POST", path, headers, body)
        finally:
            with self.lock:
                self.inflight.discard(mid)
        return answer.status, answer.body

    def handled(self):
        with self.lock:
            return sum(self.runs.values())


WORKER = """
import sys, webhooklite
outbox = webhooklite.Outbox(sys.argv[1], workers=4, per_endpoint=4, lease=1.0, timeout=0.5, poll=0.05)
print("ready", flush=True)
sys.stdin.readline()
print(outbox.drain(timeout=30), flush=True)
outbox.close()
"""


def test_three_worker_processes_share_1000_messages_and_a_sigkill_loses_nothing(raw, postgres):
    url = postgres()
    secret = webhooklite.generate_secret()
    watch = Watched(secret, delay=0.01)
    server = raw(watch)
    with webhooklite.Outbox(url) as outbox:
        outbox.add_endpoint(server.base + "/hooks", secret=secret)
        ids = outbox.send_many([("order.created", {"n": i}) for i in range(1000)])
    workers = [python(WORKER, url, stdin=subprocess.PIPE) for _ in range(3)]
    try:
        for w in workers:
            assert read_line(w) == "ready"
        for w in workers:
            w.stdin.write("go\n")
            w.stdin.flush()
        assert wait_until(lambda: watch.handled() >= 250, 15), "the workers never delivered"
        workers[0].send_signal(signal.SIGKILL)  # mid-delivery, claims queued and in flight
        workers[0].wait(5)
        at_kill = watch.handled()
        for w in workers[1:]:
            assert read_line(w, 40) == "True"
    finally:
        for w in workers:
            w.kill()
            w.wait(5)
            for f in (w.stdin, w.stdout, w.stderr):
                f.close()
    assert at_kill < 1000, "everything was delivered before the kill: the test proved nothing"
    assert set(watch.runs) == set(ids), "a message was lost"
    assert set(watch.runs.values()) == {1}, "a handler ran twice"
    assert watch.overlaps == [], "a delivery was sent twice at once"
    rows = webhooklite.Outbox(url)
    try:
        assert rows.stats()[1]["delivered"] == 1000 and rows.pending() == 0
    finally:
        rows.close()
    psycopg = __import__("psycopg")
    with psycopg.connect(url) as c:
        by_process = collections.Counter()
        for worker, n in c.execute("SELECT worker, count(*) FROM webhooklite_attempts GROUP BY worker"):
            by_process[worker.split(":")[1]] += n
    # All three did a share (the killed one's is small when it was slow to start on a loaded machine).
    assert len(by_process) == 3 and min(by_process.values()) >= 10, by_process
    resent = sum(watch.requests.values()) - 1000
    print(f"killed after {at_kill} handled; shares {sorted(by_process.values())}; "
          f"{resent} redelivered (the killed worker's unrecorded attempts), answered by dedupe")
