"""Prometheus text-format metrics, with no client library: counters, gauges and histograms.

    requests = Counter("webhooklite_receiver_requests_total", "Requests answered, by status.", ("status",))
    requests.inc("200")
    print(render([requests]))

    # HELP webhooklite_receiver_requests_total Requests answered, by status.
    # TYPE webhooklite_receiver_requests_total counter
    webhooklite_receiver_requests_total{status="200"} 1

The format is Prometheus' text exposition format 0.0.4 (what every scraper reads):
one ``# HELP`` and ``# TYPE`` line per family, then one sample per line, label values
escaped (backslash, double quote, newline). Counting takes a lock (a ``+=`` on a dict is
not atomic across threads); it costs well under a microsecond.

Who exposes what: ``Receiver.metrics()`` (requests by status), ``Inbox.metrics()`` (handler runs,
stored events), ``Outbox.metrics()`` (attempts, their durations, pending and dead deliveries,
disabled endpoints); ``receiver.serve(metrics_path="/metrics")`` answers a scrape with
:func:`answer`.
"""
import bisect
import math
import threading
import logging
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = ["Counter", "Histogram", "Gauge", "render", "answer", "CONTENT_TYPE", "DURATION_BUCKETS"]

#: The Content-Type of the text format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Histogram buckets for durations in seconds: 5 ms to 30 s.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(x: float) -> str:
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 2 ** 53):
        return str(int(x))
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x))


class _Family:
    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.labels = tuple(labels)
        self._lock = threading.Lock()

    def _head(self) -> List[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def lines(self) -> List[str]:  # pragma: no cover - every family overrides it
        raise NotImplementedError


class Counter(_Family):
    """A count that only goes up, per combination of label values."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: Dict[Tuple[str, ...], float] = {}

    def inc(self, *values: str, by: float = 1) -> None:
        """Add ``by`` to the sample with these label values (in the order of ``labels``)."""
        with self._lock:
            self._values[values] = self._values.get(values, 0) + by

    def value(self, *values: str) -> float:
        """The current count for these label values (0 if never counted)."""
        with self._lock:
            return self._values.get(values, 0)

    def lines(self) -> List[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self._head() + [f"{self.name}{_labels(self.labels, k)} {_number(v)}" for k, v in items]


class Gauge(Counter):
    """A value that is set, not counted (e.g. pending deliveries right now)."""

    kind = "gauge"

    def set(self, value: float, *values: str) -> None:
        with self._lock:
            self._values[values] = value


class Histogram(_Family):
    """Observations in cumulative buckets (``_bucket{le=...}``, ``_sum``, ``_count``), per label values."""

    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Sequence[str] = (),
                 buckets: Sequence[float] = DURATION_BUCKETS) -> None:
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(float(b) for b in buckets))
        self._data: Dict[Tuple[str, ...], List[float]] = {}  # per label values: bucket counts..., sum, count

    def observe(self, x: float, *values: str) -> None:
        i = bisect.bisect_left(self.buckets, x)
        with self._lock:
            data = self._data.get(values)
            if data is None:
                data = self._data[values] = [0.0] * (len(self.buckets) + 2)
            if i < len(self.buckets):
                data[i] += 1
            data[-2] += x
            data[-1] += 1

    def lines(self) -> List[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._data.items())
        out = self._head()
        for key, data in items:
            running = 0.0
            for bound, n in zip(self.buckets, data):
                running += n
                le = 'le="' + _number(bound) + '"'
                out.append(f"{self.name}_bucket{_labels(self.labels, key, le)} {_number(running)}")
            inf = 'le="+Inf"'
            out.append(f"{self.name}_bucket{_labels(self.labels, key, inf)} {_number(data[-1])}")
            out.append(f"{self.name}_sum{_labels(self.labels, key)} {_number(data[-2])}")
            out.append(f"{self.name}_count{_labels(self.labels, key)} {_number(data[-1])}")
        return out


def render(families: Iterable[_Family], extra: Optional[Iterable[str]] = None) -> str:
    """The text format for ``families`` (and any ready-made ``extra`` lines), ending in a newline."""
    lines: List[str] = []
    for family in families:
        lines.extend(family.lines())
    lines.extend(extra or ())
    return "\n".join(lines) + "\n"


def answer(receiver: Any, method: str) -> Any:
    """The built-in server's answer to a scrape: ``receiver.metrics()``, and its inbox's when it has one.

    GET (or HEAD) only: other methods are 405. When the inbox's database cannot be read the answer
    is 503, so the scrape shows as failed rather than as a partial page.
    """
    from .receiver import Response, _error

    if method not in ("GET", "HEAD"):
        return _error(405, "method not allowed: the metrics are read with GET", [("Allow", "GET, HEAD")])
    text = receiver.metrics()
    inbox = getattr(receiver, "inbox", None)
    if inbox is not None:
        try:
            text += inbox.metrics()
        except Exception as exc:  # the database: say so, keep serving
            logging.getLogger("webhooklite").warning("metrics: the inbox's database cannot be read (%s)", exc)
            return _error(503, "the inbox's database cannot be read; try again")
    return Response(200, [("Content-Type", CONTENT_TYPE)], text.encode("utf-8"))
