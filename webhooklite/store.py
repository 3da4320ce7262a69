"""Dedupe stores: which message ids a receiver has already handled.

A store is any object with three methods (several hosts can share one, e.g.
on Redis; see the README):

``begin(id) -> "new" | "done" | "busy"``
    "new": this caller handles the message now; "done": its handlers already
    succeeded (answer 2xx); "busy": it is being handled elsewhere (answer 409).
``commit(id)``
    The handlers succeeded: later ``begin(id)`` calls say "done".
``abort(id)``
    The handlers failed: the id may be handled again.
"""
import threading
from collections import OrderedDict
from typing import Set

__all__ = ["MemoryStore"]


class MemoryStore:
    """In-process store; remembers the last ``max_ids`` handled ids (bounded memory)."""

    def __init__(self, max_ids: int = 100_000) -> None:
        if max_ids < 1:
            raise ValueError("max_ids is at least 1")
        #: How many handled ids are remembered; the oldest are forgotten first.
        self.max_ids = max_ids
        self._done: "OrderedDict[str, None]" = OrderedDict()
        self._busy: Set[str] = set()
        self._lock = threading.Lock()

    def begin(self, id: str) -> str:
        with self._lock:
            if id in self._done:
                return "done"
            if id in self._busy:
                return "busy"
            self._busy.add(id)
            return "new"

    def commit(self, id: str) -> None:
        with self._lock:
            self._busy.discard(id)
            self._done[id] = None
            if len(self._done) > self.max_ids:
                self._done.popitem(last=False)

    def abort(self, id: str) -> None:
        with self._lock:
            self._busy.discard(id)

    def __len__(self) -> int:
        return len(self._done)
