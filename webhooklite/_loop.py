"""A private asyncio loop in a thread, where sync transports run ``async def`` handlers to completion.

The threaded server and WSGI call handlers from plain threads. An ``async def``
handler there runs on one event loop of the receiver's own (a daemon thread),
and the calling thread waits for it: many server threads share the loop, and
whatever the handler awaits (an AsyncSender, an async database client) lives
on one loop for the life of the receiver. asyncio is imported only when the
first coroutine arrives.
"""
import os
import threading
from typing import Any, Awaitable, Optional

__all__ = ["LoopThread"]


class LoopThread:
    """``run(coroutine)`` from any thread: it runs on the private loop, and the caller waits for its result."""

    def __init__(self, name: str = "webhooklite-async") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: Any = None
        self._pid = 0

    def _get(self) -> Any:
        with self._lock:
            # After a fork (gunicorn --preload) the loop's thread is not in the child: start another.
            if self._loop is None or self._pid != os.getpid():
                import asyncio

                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name=self._name, daemon=True).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def run(self, awaitable: Awaitable[Any], timeout: Optional[float] = None) -> Any:
        """Run ``awaitable`` on the loop; return its result or raise its exception in this thread."""
        import asyncio

        loop = self._get()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("LoopThread.run() called from its own loop: await the coroutine instead")
        return asyncio.run_coroutine_threadsafe(_wrap(awaitable), loop).result(timeout)

    def close(self) -> None:
        """Stop the loop (a later run() starts a new one)."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None and self._pid == os.getpid():
            loop.call_soon_threadsafe(loop.stop)


async def _wrap(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
