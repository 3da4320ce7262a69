"""A lock that goes to its waiters in the order they came (sqlite's writers queue on one).

``threading.Lock`` promises no order: a thread that releases it and asks again at once, still
running, usually wins against the ones that have slept on it. Eight threads committing back to
back kept a ninth, which writes now and then, waiting up to 1.6 s on a busy machine. Here a
release hands the lock to the oldest waiter, so one waits for at most the writers ahead of it.
"""
import threading
from collections import deque
from typing import Deque

__all__ = ["FifoLock"]


class FifoLock:
    """``acquire(timeout)`` and ``release()``, first come first served.

    Each waiter sleeps on a lock of its own, which ``release`` releases to hand over: the lock
    is never free while someone waits, so a newcomer cannot slip in between.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()  # guards the two fields below, held for microseconds
        self._held = False
        self._waiters: Deque[threading.Lock] = deque()

    def acquire(self, timeout: float) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        try:
            if turn.acquire(timeout=timeout):
                return True  # handed over by release(): held for us all along
        except BaseException:  # e.g. Ctrl-C while waiting: a turn left queued would hold the lock for ever
            if not self._leave(turn):
                self.release()  # it was handed over all the same: pass it on
            raise
        return not self._leave(turn)  # the wait ran out; unless release() handed it over meanwhile

    def _leave(self, turn: threading.Lock) -> bool:
        """Take ``turn`` out of the queue; False when release() has already handed it the lock."""
        with self._mutex:
            try:
                self._waiters.remove(turn)
            except ValueError:
                return False
            return True

    def release(self) -> None:
        with self._mutex:
            if not self._held:
                raise RuntimeError("release of an unheld FifoLock")
            if self._waiters:
                self._waiters.popleft().release()  # still held, by the oldest waiter now
            else:
                self._held = False
