"""A lock that goes to its waiters in the order they came (sqlite's writers queue on one).

``threading.Lock`` promises no order: a thread that releases it and asks again at once, still
running, usually wins against the ones that have slept on it. Eight threads committing back to
back kept a ninth, which writes now and then, waiting up to 1.6 s on a busy machine. Here a
release hands the lock to the oldest waiter, so one waits for at most the writers ahead of it.

Unlike ``threading.Lock``, this one is Python code, and a signal handler that raises (Ctrl-C) can
run between any two of its calls. So every hold has a token, the object ``acquire`` returns:
``acquire`` that is interrupted gives up whatever it had got by then, and ``release(token)`` does
nothing for a hold that is over, so it may safely be called again after an interrupt.
"""
import threading
from collections import deque
from typing import Deque, Optional

__all__ = ["FifoLock", "Hold"]


class Hold:
    """One acquisition: its waiter's wake-up lock (released to say the FifoLock is its now)."""

    __slots__ = ("wake",)

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()

    def _wake(self) -> None:
        try:
            self.wake.release()
        except RuntimeError:  # woken already: waking is idempotent, so a retried release may wake again
            pass


class FifoLock:
    """``acquire(timeout) -> Hold or None`` and ``release(hold)``, first come first served.

    One queue of holds: the first is the holder, the others wait, each on its own hold's lock. A
    release takes the holder off the queue and wakes the next: the lock is never free while someone
    waits, so a newcomer cannot slip in between. With one queue, every step changes one thing, so
    an interrupt between two steps leaves the state whole: at worst the next holder is not woken,
    and finds the lock its own when its wait runs out (or when the interrupted release is retried).
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()  # guards the queue, held for microseconds
        self._queue: Deque[Hold] = deque()

    def acquire(self, timeout: float) -> Optional[Hold]:
        hold = Hold()
        queue = self._queue
        try:
            with self._mutex:
                queue.append(hold)
                if queue[0] is hold:
                    return hold
            hold.wake.acquire(timeout=timeout)  # woken by a release, or the time ran out
            with self._mutex:
                if queue[0] is hold:
                    return hold  # its turn came, maybe just as the wait ran out
                queue.remove(hold)
                return None
        except BaseException:  # e.g. Ctrl-C at any point above: give up what this call got
            with self._mutex:
                if queue and queue[0] is hold:
                    self._pass_on()
                elif hold in queue:
                    queue.remove(hold)
            raise

    def release(self, hold: Hold) -> None:
        """End ``hold``; nothing if it is over already (an interrupted release may be retried)."""
        with self._mutex:
            if self._queue and self._queue[0] is hold:
                self._pass_on()
            elif self._queue:
                self._queue[0]._wake()  # a retry: the release it retries may have stopped short of this

    def _pass_on(self) -> None:
        """(Under the mutex) the next in the queue holds the lock now, or no one does."""
        self._queue.popleft()
        if self._queue:
            self._queue[0]._wake()

    def _after_fork(self) -> None:
        """In a child after fork(): the other threads, and so the waiters, are gone; the mutex
        may have been taken by one of them. The holder stays, for the child to release."""
        self._mutex = threading.Lock()
        while len(self._queue) > 1:
            self._queue.pop()
