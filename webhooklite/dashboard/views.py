"""What the pages show, read through the public API of the Outbox and the Inbox (nothing here touches a table).

The one thing the API has no single call for is the sparkline: each endpoint's success rate over
the last hour in :data:`BUCKETS` slots. It is made from the attempt log of the endpoint's newest
deliveries (:data:`RECENT` of them) that changed in the last hour: ``Outbox.deliveries`` then
``Outbox.attempts`` for each. A delivery's attempts change only when the delivery does (its
``updated`` and ``attempts`` move), so they are read once and kept until it changes again: after the first page,
a refresh reads one short list per endpoint and the attempts of what changed since.
"""
import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional, Set, Tuple

__all__ = ["Slot", "Health", "Views", "WINDOW", "BUCKETS", "RECENT"]

#: The sparkline's span (seconds) and its slots: the last hour in 5-minute slots, as stats() counts it.
WINDOW, BUCKETS = 3600.0, 12
#: How many of an endpoint's newest deliveries the sparkline reads.
RECENT = 100


class Slot(NamedTuple):
    """One slot of a sparkline: when it starts (unix seconds), attempts in it, and how many succeeded (2xx)."""

    start: float
    attempts: int
    succeeded: int


class Health(NamedTuple):
    """One endpoint as the endpoints page shows it: the stored endpoint, its ``stats()`` entry, its sparkline."""

    endpoint: Any
    stats: Dict[str, Any]
    slots: List[Slot]


def _ok(status: Optional[int]) -> bool:
    return status is not None and 200 <= status < 300


class Views:
    """The dashboard's reads: an ``outbox``, an ``inbox``, or both (None for the one the database lacks)."""

    def __init__(self, outbox: Any = None, inbox: Any = None) -> None:
        self.outbox = outbox
        self.inbox = inbox
        self._lock = threading.Lock()
        #: delivery id -> ((its ``updated`` and ``attempts`` when read), [(attempt time, succeeded)])
        self._attempts: Dict[int, Tuple[Tuple[float, int], List[Tuple[float, bool]]]] = {}

    def health(self, now: Optional[float] = None) -> List[Health]:
        """Every endpoint, oldest first, with its health and sparkline."""
        now = time.time() if now is None else now
        stats = self.outbox.stats()
        seen: Set[int] = set()
        out = []
        for e in self.outbox.endpoints():
            out.append(Health(e, stats.get(e.id, {}), self.slots(e.id, now, seen)))
        with self._lock:  # forget the deliveries no endpoint showed (purged, older than the hour)
            for gone in set(self._attempts) - seen:
                del self._attempts[gone]
        return out

    def slots(self, endpoint_id: int, now: float, seen: Optional[Set[int]] = None) -> List[Slot]:
        """The endpoint's last hour in :data:`BUCKETS` slots, oldest first."""
        width = WINDOW / BUCKETS
        start = now - WINDOW
        counts = [[0, 0] for _ in range(BUCKETS)]
        for d in self.outbox.deliveries(endpoint=endpoint_id, limit=RECENT):
            if d.updated is None or d.updated < start or not d.attempts:
                continue
            if seen is not None:
                seen.add(d.id)
            for at, ok in self._attempts_of(d):
                if start <= at <= now:
                    slot = counts[min(BUCKETS - 1, int((at - start) // width))]
                    slot[0] += 1
                    slot[1] += ok
        return [Slot(start + i * width, n, ok) for i, (n, ok) in enumerate(counts)]

    def _attempts_of(self, d: Any) -> List[Tuple[float, bool]]:
        with self._lock:
            cached = self._attempts.get(d.id)
        key = (d.updated, d.attempts)
        if cached is not None and cached[0] == key:
            return cached[1]
        found = [(float(a.at), _ok(a.status)) for a in self.outbox.attempts(d.id)]
        with self._lock:
            self._attempts[d.id] = (key, found)
        return found

    def endpoint(self, endpoint_id: int) -> Any:
        """One stored endpoint (KeyError when there is none)."""
        for e in self.outbox.endpoints():
            if e.id == endpoint_id:
                return e
        raise KeyError(f"no endpoint {endpoint_id} in this outbox")

    def endpoint_urls(self) -> Dict[int, str]:
        """Endpoint id -> URL, for the pages that list deliveries of several endpoints."""
        return {e.id: e.url for e in self.outbox.endpoints()}
