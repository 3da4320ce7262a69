"""Ctrl-C and SIGTERM end a blocking call quietly: one helper for serve(), Outbox.run() and the CLI."""
import signal
import threading
from typing import Any, Optional

__all__ = ["until_stopped"]


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class until_stopped:
    """``with until_stopped(): block()`` — Ctrl-C or SIGTERM ends the block, with no traceback.

    In the main thread SIGTERM is turned into KeyboardInterrupt for the
    block's duration (the previous handler is put back); elsewhere signals
    cannot be handled, so only the KeyboardInterrupt part applies.
    """

    def __enter__(self) -> "until_stopped":
        self._previous: Optional[Any] = None
        self._installed = threading.current_thread() is threading.main_thread()
        if self._installed:
            self._previous = signal.signal(signal.SIGTERM, _interrupt)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
        return exc_type is KeyboardInterrupt
