"""Metrics in Prometheus' text format: the receiver's requests by status."""
import re

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
