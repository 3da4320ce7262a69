"""The application's callbacks (``on_dead``, ``on_disabled``), run on a thread of their own.

The dispatcher that records outcomes only queues what happened, once its round is committed;
this thread does the rest (reading the objects the callbacks get, then calling them), so a slow
callback never holds up delivery. Each call is made on its own: an exception is logged with its
traceback and the next call goes on. What a callback is told is in the database already (the
dead deliveries, the endpoint's ``disabled_reason``), so a failing callback loses no work.

The queue is in memory: a process that dies between a commit and the call does not make it
(at most once). Poll ``dead()`` or ``endpoints()`` where every event must be seen.
"""
import collections
import logging
import threading
from typing import Any, Callable, Deque, Optional

__all__ = ["CallbackThread"]

log = logging.getLogger("webhooklite")


class CallbackThread:
    """Runs queued jobs (zero-argument functions) in order on one daemon thread, started on first use."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: Deque[Callable[[], None]] = collections.deque()
        self._cv = threading.Condition(threading.Lock())
        self._thread: Optional[threading.Thread] = None
        self._busy = False

    def put(self, job: Callable[[], None]) -> None:
        with self._cv:
            self._jobs.append(job)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cv.notify()

    @staticmethod
    def call(what: str, fn: Callable[..., Any], *args: Any) -> None:
        """``fn(*args)``; an exception is logged (``what`` names the callback), never raised."""
        try:
            fn(*args)
        except Exception:
            log.exception("%s raised; nothing is lost (the outbox recorded it before calling)", what)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._jobs:
                    self._busy = False
                    self._cv.notify_all()  # wait_idle() callers
                    if not self._cv.wait(60.0) and not self._jobs:
                        self._thread = None  # idle for a minute: the next put() starts another
                        return
                job = self._jobs.popleft()
                self._busy = True
            try:
                job()
            except Exception:  # reading the objects failed (the database): logged, the rest go on
                log.exception("%s: a callback could not be prepared", self.name)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every job queued so far has run (True), or ``timeout`` seconds (False)."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._jobs and not self._busy, timeout)

    def reset(self) -> None:
        """In a child after fork(): the parent's thread does not exist here; its queue is the parent's to run."""
        self.__init__(self.name)  # type: ignore[misc]
