"""The package's logger, without importing logging until something is logged.

logging (with traceback, string, weakref...) is a third of what ``import webhooklite``
would otherwise load; most programs log nothing from here on the happy path.
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see webhooklite/__init__.py)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["getLogger"]


class _LazyLogger:
    """Stands for ``logging.getLogger(name)``: every attribute is the real logger's."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attr: str) -> Any:
        import logging

        return getattr(logging.getLogger(self.name), attr)

    def __repr__(self) -> str:
        return f"<lazy logger {self.name!r}>"


def getLogger(name: str) -> Any:
    """A stand-in for ``logging.getLogger(name)`` that imports logging on first use."""
    return _LazyLogger(name)
