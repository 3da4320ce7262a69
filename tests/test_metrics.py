"""Metrics in Prometheus' text format: the receiver's requests by status."""
import re

import pytest

import webhooklite
from conftest import SECRET, signed
from webhooklite.metrics import Counter, Histogram, render


def parse(text):
    """Prometheus text format -> {sample with labels: value}, checking every line's shape."""
    samples = {}
    for line in text.splitlines():
        if line.startswith("# "):
            assert re.match(r"# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* \S", line), line
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)', line)
        assert m, line
        samples[m.group(1)] = float(m.group(2))
    return samples


def test_receiver_counts_answers_by_status(transport):
    receiver = webhooklite.Receiver(SECRET, path="/hooks")
    receiver.on("payment.*", lambda e: None)
    with transport(receiver) as call:
        for _ in range(3):
            assert call("POST", "/hooks", *signed())[0] == 200
        assert call("POST", "/hooks", *signed(secret=webhooklite.generate_secret()))[0] == 401
        assert call("POST", "/other", *signed())[0] == 404
    samples = parse(receiver.metrics())
    assert samples['webhooklite_receiver_requests_total{status="200"}'] == 3
    assert samples['webhooklite_receiver_requests_total{status="401"}'] == 1
    assert samples['webhooklite_receiver_requests_total{status="404"}'] == 1


def test_histogram_buckets_are_cumulative_and_labels_escaped():
    h = Histogram("webhooklite_x_seconds", "X.", ("endpoint",), buckets=(0.1, 1.0))
    for x in (0.05, 0.5, 0.5, 7):
        h.observe(x, 'a"b\\c\n')
    c = Counter("webhooklite_y_total", "Y.")
    c.inc()
    samples = parse(render([h, c]))
    label = 'endpoint="a\\"b\\\\c\\n"'
    assert samples['webhooklite_x_seconds_bucket{%s,le="0.1"}' % label] == 1
    assert samples['webhooklite_x_seconds_bucket{%s,le="1"}' % label] == 3
    assert samples['webhooklite_x_seconds_bucket{%s,le="+Inf"}' % label] == 4
    assert samples["webhooklite_x_seconds_count{%s}" % label] == 4
    assert samples["webhooklite_x_seconds_sum{%s}" % label] == 8.05
    assert samples["webhooklite_y_total"] == 1


# -- /metrics on the built-in server (issue 14) ------------------------------------------------


def get(server, path, method="GET", conn=None):
    import http.client

    own = conn is None
    conn = conn or http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read()
    finally:
        if own:
            conn.close()


def test_the_server_answers_get_on_metrics_path_with_the_receivers_and_its_inboxs_metrics(tmp_path):
    import http.client

    inbox = webhooklite.Inbox(str(tmp_path / "inbox.db"), schedule=(0,))
    receiver = webhooklite.Receiver(SECRET, path="/hooks", inbox=inbox)
    receiver.on("payment.*", lambda e: None)
    with receiver.start(metrics_path="/metrics") as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
        try:
            for _ in range(2):  # a scrape and deliveries on one kept-alive connection
                conn.request("POST", "/hooks", *reversed(signed()))
                answer = conn.getresponse()
                assert (answer.status, answer.read()) == (202, b'{"status":"accepted"}')
            status, ctype, body = get(server, "/metrics?since=now", conn=conn)
        finally:
            conn.close()
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4"), (status, ctype)
        samples = parse(body.decode())
        assert samples['webhooklite_receiver_requests_total{status="202"}'] == 2  # scrapes are not counted
        assert inbox.drain(timeout=10)
        samples = parse(get(server, "/metrics")[2].decode())
        assert samples['webhooklite_inbox_events{state="done"}'] == 2
        assert any(k.startswith("webhooklite_inbox_handler_runs_total") for k in samples)
        assert get(server, "/metrics", "HEAD")[::2] == (200, b"")
        status, _, body = get(server, "/metrics", "POST")
        assert status == 405 and b"GET" in body
        assert get(server, "/other")[0] == 404  # every other path is the receiver's, as before
    inbox.close()


def test_without_metrics_path_there_is_no_metrics_page_and_a_bad_one_is_refused():
    receiver = webhooklite.Receiver(SECRET)
    with receiver.start() as server:
        assert get(server, "/metrics")[0] == 405  # the receiver's own answer to a GET
    for bad in ("metrics", "/hooks"):
        with pytest.raises(ValueError, match="metrics_path"):
            webhooklite.Receiver(SECRET, path="/hooks").start(metrics_path=bad)
