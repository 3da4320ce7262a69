"""What several commands take: range-checked numbers, --secret (a Signer), --scheme, a URL."""
import argparse
from typing import Any, Callable, List, Mapping, Optional
from urllib.parse import urlsplit

from ..signing import SCHEMES, Signer
from .output import UsageError

__all__ = [
    "number", "port", "fraction", "seconds", "positive_seconds", "count", "http_status", "whole_seconds",
    "SECRET_HELP", "SCHEMES", "signer", "check_url", "guess_scheme",
]

#: The help of every --secret option (each command adds what no secret means).
SECRET_HELP = "the signing secret (whsec_..., or a whsk_/whpk_ v1a key); repeat it while keys rotate"


def number(cast: Callable[[str], Any], low: float, high: float, what: str) -> Callable[[str], Any]:
    """An argparse type: ``cast(text)`` within ``low..high`` (inclusive), or a one-line error."""

    def parse(text: str) -> Any:
        try:
            x = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not low <= x <= high:  # NaN fails this too
            raise argparse.ArgumentTypeError(f"{what} from {low:g} to {high:g}, not {text}")
        return x

    return parse


port = number(int, 0, 65535, "a port number")
fraction = number(float, 0.0, 1.0, "a fraction")
seconds = number(float, 0.0, 1e6, "a number of seconds")
positive_seconds = number(float, 1e-3, 1e6, "a number of seconds")
count = number(int, 0, 100, "a whole number")
http_status = number(int, 200, 599, "an HTTP status")
whole_seconds = number(int, 0, 1e6, "whole seconds")


def signer(secrets: Optional[List[str]], scheme: str, now: Optional[float] = None) -> Optional[Signer]:
    """The Signer for the --secret options given (None for none); a bad secret is a usage error."""
    if not secrets:
        return None
    try:
        return Signer(secrets if len(secrets) > 1 else secrets[0], scheme, now=None if now is None else lambda: now)
    except ValueError as e:
        raise UsageError(f"--secret: {e}") from None


def check_url(url: str, what: str) -> str:
    """``url`` if it is an http(s) URL with a host and a numeric port, else a usage error naming ``what``."""
    parts = urlsplit(url)
    try:
        parts.port
    except ValueError:
        raise UsageError(f"{what}: the port is not a number: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{what} must be an http:// or https:// URL with a host, not {url!r}")
    return url


def guess_scheme(h: Mapping[str, str]) -> str:
    """The scheme a request's signature headers belong to."""
    if "stripe-signature" in h:
        return "stripe"
    if "x-hub-signature-256" in h or "x-hub-signature" in h:
        return "github"
    return "standard"
