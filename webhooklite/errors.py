"""The exception hierarchy: one base class, each error carrying what a caller needs.

    WebhookError
      SignatureError (401) > TimestampError
      PayloadError (400)
      DeliveryError (.status, .attempts, .delivery)
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see webhooklite/__init__.py)
if TYPE_CHECKING:
    from typing import Optional

    from ._wire import Delivery

__all__ = [
    "WebhookError",
    "SignatureError",
    "TimestampError",
    "PayloadError",
    "DeliveryError",
]


class WebhookError(Exception):
    """Base class of every error webhooklite raises on purpose."""

    #: The HTTP status a receiver answers with when this error ends a request.
    status: int = 500


class SignatureError(WebhookError):
    """The request is not signed by a secret we know, or not signed at all.

    ``str(error)`` says what to fix and is meant for the developer's log.
    ``error.public`` is the short reason that is safe to send back to the
    caller: it never says anything about the secret.
    """

    status = 401

    def __init__(self, message: str, public: Optional[str] = None) -> None:
        super().__init__(message)
        #: A reason safe to put in a 401 response body.
        self.public: str = public or message


class TimestampError(SignatureError):
    """The signature's timestamp is outside the tolerance (clock skew or replay)."""

    def __init__(self, message: str, public: Optional[str] = None, *, skew: float = 0.0) -> None:
        super().__init__(message, public)
        #: Seconds the timestamp is off by: positive in the future, negative in the past.
        self.skew: float = skew


class PayloadError(WebhookError):
    """The body is not what a webhook body must be (malformed JSON, bad encoding)."""

    status = 400


class DeliveryError(WebhookError):
    """A delivery did not get a 2xx answer; raised by ``Delivery.raise_for_status()``."""

    def __init__(self, message: str, delivery: "Delivery") -> None:
        super().__init__(message)
        #: The failed delivery, with its status, attempts and response body.
        self.delivery = delivery
        #: The last HTTP status, or None when no answer came (connection error).
        self.status: Optional[int] = delivery.status  # type: ignore[assignment]
        #: How many attempts were made.
        self.attempts: int = delivery.attempts
