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
from typing import Any

__version__ = "0.1.0"

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
from .sender import Delivery, Retry, Sender, Timeout, send
from .signing import Signer, generate_keypair, generate_secret, sign, verify
from .store import MemoryStore

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
    # sqlite3 is imported only by those who use the outbox or the shared dedupe store.
    if name == "Outbox":
        from .outbox import Outbox

        return Outbox
    if name == "Inbox":
        from .inbox import Inbox

        return Inbox
    if name == "SQLiteStore":
        from .store import SQLiteStore

        return SQLiteStore
    if name in ("AsyncSender", "asend"):  # asyncio is imported only by those who send from it
        from . import aio

        return getattr(aio, name)
    if name == "PostgresStore":  # imports the PostgreSQL driver when it is built, not before
        from .pgstore import PostgresStore

        return PostgresStore
    if name == "StorageError":  # the outbox's and stores' database failures
        from .backends import StorageError

        return StorageError
    raise AttributeError(f"module 'webhooklite' has no attribute {name!r}")
