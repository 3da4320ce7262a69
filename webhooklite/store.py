"""Dedupe stores: which message ids a receiver has already handled.

A store is any object with three methods (several hosts can share one, e.g.
on Redis; see docs/receiving.md, "A dedupe store for several hosts"):

``begin(id) -> "new" | "done" | "busy"``
    "new": this caller handles the message now; "done": its handlers already
    succeeded (answer 2xx); "busy": it is being handled elsewhere (answer 409).
``commit(id)``
    The handlers succeeded: later ``begin(id)`` calls say "done".
``abort(id)``
    The handlers failed: the id may be handled again.

A store that lets a claim be taken over (after ``busy_for``, as SQLiteStore and PostgresStore do)
may set ``takes_holder = True`` and take a keyword ``holder`` in all three (a subclass or a wrapper
whose own methods do not take it is called without it, see :func:`_takes_holder`): the receiver then
passes an object that stands for the request (its Event, alive until the claim is settled; an
Event is not hashable: compare holders by identity), so that when two requests in one process
hold claims on one id (the first outlived ``busy_for``), the first one's late ``abort`` removes
its own claim and not the second's, which would let a third request run the handlers beside the
second.
"""
from __future__ import annotations

import os
from _thread import allocate_lock  # threading.Lock itself, without loading threading at import
from _thread import get_ident as _get_ident

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see webhooklite/__init__.py)
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Set

__all__ = ["MemoryStore", "SQLiteStore"]


class MemoryStore:
    """In-process store; remembers the last ``max_ids`` handled ids (bounded memory).

    Once it is full, its memory is never reallocated as ids come and go: a
    ring of ``max_ids`` slots records the order (the oldest id is forgotten
    when a new one takes its slot), and membership is kept in many small sets
    (one per 64 ids, at most 4096, chosen by the id's hash). One big table with constant
    churn (an ``OrderedDict`` of 100,000 ids) is rebuilt every ~250,000 ids as
    several-MiB blocks, from whichever server thread commits at the time; under
    glibc's per-thread malloc arenas that grew a 32-connection server's RSS by
    about 25-35 MiB per million requests although no object was kept.
    """

    #: Claims are never taken over here (a busy id stays busy until its request settles it).
    takes_holder = False

    def __init__(self, max_ids: int = 100_000) -> None:
        if max_ids < 1:
            raise ValueError("max_ids is at least 1")
        #: How many handled ids are remembered; the oldest are forgotten first.
        self.max_ids = max_ids
        shards = 1
        while shards * 64 < max_ids and shards < 4096:
            shards *= 2
        self._mask = shards - 1
        self._shards: List[Set[str]] = [set() for _ in range(shards)]
        self._ring: List[str] = []  # handled ids in the order committed; grows to max_ids, then wraps
        self._next = 0  # once full: the ring slot the next new id takes (it holds the oldest id)
        self._busy: Set[str] = set()
        self._lock = allocate_lock()

    def begin(self, id: str) -> str:
        with self._lock:
            if id in self._shards[hash(id) & self._mask]:
                return "done"
            if id in self._busy:
                return "busy"
            self._busy.add(id)
            return "new"

    def commit(self, id: str) -> None:
        with self._lock:
            self._busy.discard(id)
            shard = self._shards[hash(id) & self._mask]
            if id in shard:  # already remembered: it keeps its place
                return
            shard.add(id)
            ring = self._ring
            if len(ring) < self.max_ids:
                ring.append(id)
                return
            i = self._next
            oldest = ring[i]
            self._shards[hash(oldest) & self._mask].discard(oldest)
            ring[i] = id
            self._next = i + 1 if i + 1 < self.max_ids else 0

    def abort(self, id: str) -> None:
        with self._lock:
            self._busy.discard(id)

    def __len__(self) -> int:
        return len(self._ring)


class _Claims:
    """The tokens of the claims one store object holds, by id, then by holder (for SQLiteStore and
    PostgresStore, whose rows carry the token of the claim that made them).

    The holder is what will settle the claim: the request's own object when the receiver passes
    ``holder=``, else the calling thread. A caller that passes none and whose thread holds no claim
    on the id gets the one claim on it here, if there is one: a direct user may begin on one thread
    and commit on another. With two (one taken over after ``busy_for``) it cannot tell which is its
    own: a commit takes either (the handlers succeeded once: the id is done whichever it was), an
    abort neither (removing the wrong one would let a third caller run the handlers beside the one
    still running). Not thread-safe: the store calls it under its own lock.
    """

    def __init__(self) -> None:
        self._ids: Dict[str, Dict[Any, str]] = {}

    def add(self, id: str, holder: Any, token: str) -> None:
        self._ids.setdefault(id, {})[_holder(holder)] = token

    def take(self, id: str, holder: Any, any_claim: bool) -> Optional[str]:
        """The token of the caller's claim on ``id``, forgotten here; None if it holds none."""
        holders = self._ids.get(id)
        if not holders:
            return None
        token = holders.pop(_holder(holder), None)
        if token is None and holder is None and (len(holders) == 1 or any_claim):
            _, token = holders.popitem()
        if not holders:
            del self._ids[id]
        return token


def _holder(holder: Any) -> Any:
    """The key of a claim's holder: the object's identity (it lives as long as the claim), else the thread's."""
    return ("thread", _get_ident()) if holder is None else id(holder)


def _takes_holder(store: Any) -> bool:
    """Whether ``store`` says ``takes_holder`` and its begin, commit and abort, as bound on it, all
    take ``holder=`` (a subclass overriding one with ``begin(self, id)`` does not, nor a wrapper that
    passes ``takes_holder`` on from the store inside)."""
    if getattr(store, "takes_holder", False) is not True:
        return False
    import inspect  # once per store object (the receiver keeps the answer)

    for name in ("begin", "commit", "abort"):
        try:
            params = inspect.signature(getattr(store, name)).parameters.values()
        except (AttributeError, TypeError, ValueError):
            return False
        if not any(p.name == "holder" or p.kind is p.VAR_KEYWORD for p in params):
            return False
    return True


#: Connections inherited across fork(): sqlite3 forbids using them in the child, and closing one
#: there could disturb the parent's; they are kept here, untouched, for the life of the process.
_ABANDONED: List[Any] = []


def _after_fork_in_child(obj: Any, method: Callable[[Any], None]) -> None:
    """Call ``method(obj)`` in the child after each fork(), for as long as ``obj`` lives."""
    if not hasattr(os, "register_at_fork"):  # Windows: no fork
        return
    import weakref
    ref = weakref.ref(obj)

    def reinit() -> None:
        target = ref()
        if target is not None:
            method(target)

    os.register_at_fork(after_in_child=reinit)


def __getattr__(name: str) -> Any:
    # SQLiteStore lives in its own module, which loads sqlite3's helpers only when it is used.
    if name in ("SQLiteStore", "_open_sqlite"):
        from . import sqlite_store

        return getattr(sqlite_store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
