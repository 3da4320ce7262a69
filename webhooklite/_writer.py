"""Group commit: the rows of concurrent deliveries, written in batches by one thread.

Every request is answered only once its row is committed, but when 32 arrive at once they
share one transaction (and, on sqlite's synchronous=FULL, one fsync: about 270 us here)
instead of queueing for 32.

A caller either waits for its row's commit (:meth:`Writer.put`), or leaves a callback that the
writing thread calls once it is committed (:meth:`Writer.put_later`). The built-in server does
the second: the writer sends each request's answer itself, so no request thread sleeps until
another wakes it. On one core that matters: waking a thread from one that holds the GIL hands
the core to a thread that can only wait for the GIL, two context switches per request for
nothing; here a request thread goes straight back to reading its connection.
"""
import logging
import threading
from typing import Any, Callable, List, Optional, Tuple

__all__ = ["Writer"]

log = logging.getLogger("webhooklite")

Row = Tuple[Any, ...]
#: What the writer calls for each row: (True for a new row, False for a stored id, None on an
#: error), and the error (the database could not take the batch) or None.
Done = Callable[[Optional[bool], Optional[BaseException]], None]


class _Waiter:
    """A caller of put() waiting for its row: ``ready`` is a lock held until then (lighter than an Event)."""

    __slots__ = ("ready", "new", "error")

    def __init__(self) -> None:
        self.ready = threading.Lock()
        self.ready.acquire()
        self.new: Optional[bool] = None
        self.error: Optional[BaseException] = None

    def done(self, new: Optional[bool], error: Optional[BaseException]) -> None:
        self.new, self.error = new, error
        self.ready.release()


class Writer:
    """Writes rows in batches with ``write(rows) -> [new?]`` on a thread of its own, started on the
    first row (and again in a forked child, which gets a new Writer). ``stored()`` is called after
    a batch that stored a new row, before any row of it is answered."""

    def __init__(self, write: Callable[[List[Row]], List[bool]], stored: Callable[[], None], name: str) -> None:
        self._write = write
        self._stored = stored
        self._name = name
        self._cv = threading.Condition(threading.Lock())
        self._queue: List[Tuple[Row, Done]] = []
        self._thread: Optional[threading.Thread] = None
        self._idle = False  # the thread waits for rows (only then does a new row notify it)
        self._closed = False

    def put(self, row: Row) -> bool:
        """Store a row and wait for its commit: True when new, False for a stored id; raises the write's error."""
        if self._thread is threading.current_thread():
            raise RuntimeError("put() from the writer's own thread would wait for itself")
        waiter = _Waiter()
        self.put_later(row, waiter.done)
        waiter.ready.acquire()
        if waiter.error is not None:
            raise waiter.error
        return bool(waiter.new)

    def put_later(self, row: Row, done: Done) -> None:
        """Queue a row; ``done`` is called on the writer's thread once it is committed (or failed).
        Raises RuntimeError when closed (``done`` is then never called)."""
        with self._cv:
            if self._closed:
                raise RuntimeError("this Inbox is closed")
            if self._thread is None:
                thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                thread.start()  # before the row is queued: when no thread can start, it is not taken
                self._thread = thread
            self._queue.append((row, done))
            if self._idle:
                self._idle = False
                self._cv.notify()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then end the thread."""
        with self._cv:
            self._closed = True
            self._cv.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    if self._closed:
                        return
                    self._idle = True
                    self._cv.wait()
                self._idle = False
                batch, self._queue = self._queue, []
            error: Optional[BaseException] = None
            news: List[Optional[bool]] = [None] * len(batch)
            try:
                news[:] = self._write([row for row, _ in batch])
            except BaseException as e:  # each row is answered with it (503), and the thread goes on
                error = e
            if error is None and any(news):
                try:
                    self._stored()
                except Exception:
                    log.exception("%s: after storing a batch", self._name)
            for (_, done), new in zip(batch, news):
                try:
                    done(new, error)
                except BaseException:  # never a dead writer: every later delivery would wait on it
                    log.exception("%s: answering a stored row failed", self._name)
