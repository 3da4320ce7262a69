"""webhooklite: send and receive signed webhooks with the Python standard library alone.

    import webhooklite
    webhooklite.send("http://127.0.0.1:8000/", "payment.completed", {"order_id": "ABC123"},
                     secret="whsec_...")

    receiver = webhooklite.Receiver("whsec_...")

    @receiver.on("payment.completed")
    def notify(event):
        print("New order!", event["item"])

    receiver.serve(port=8000)
"""
from __future__ import annotations

__version__ = "0.2.0"

from .errors import (
    DeliveryError,
    PayloadError,
    SignatureError,
    TimestampError,
    WebhookError,
)
from .events import Event
from .headers import Headers
from .receiver import Receiver, Response
from .signing import Signer, generate_keypair, generate_secret, sign, verify
from .store import MemoryStore

# The core modules import nothing from typing at run time: annotations are strings (PEP 563), and
# what only a type checker needs sits under TYPE_CHECKING, spelled as a plain False so that typing
# (a few milliseconds of every start-up) is not imported to read it. mypy treats the name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .aio import AsyncSender, asend
    from .backends import StorageError
    from .inbox import Inbox
    from .outbox import Outbox
    from .pgstore import PostgresStore
    from .sender import Delivery, Retry, Sender, Timeout, send
    from .sqlite_store import SQLiteStore

#: Public names loaded on first use (module __getattr__, PEP 562), each with the modules it needs.
_LAZY = {
    "Delivery": "sender", "Retry": "sender", "Sender": "sender", "Timeout": "sender", "send": "sender",
    "AsyncSender": "aio", "asend": "aio",                 # asyncio
    "Outbox": "outbox", "Inbox": "inbox",                 # sqlite3 or a PostgreSQL driver, threads
    "SQLiteStore": "sqlite_store",                        # sqlite3
    "PostgresStore": "pgstore", "StorageError": "backends",
}

__all__ = [
    "__version__",
    "AsyncSender",
    "Delivery",
    "DeliveryError",
    "Event",
    "Headers",
    "Inbox",
    "MemoryStore",
    "Outbox",
    "PayloadError",
    "PostgresStore",
    "Receiver",
    "Response",
    "Retry",
    "SQLiteStore",
    "Sender",
    "SignatureError",
    "Signer",
    "Timeout",
    "StorageError",
    "TimestampError",
    "WebhookError",
    "asend",
    "generate_keypair",
    "generate_secret",
    "send",
    "sign",
    "verify",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'webhooklite' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value
