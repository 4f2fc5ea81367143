"""Webhook signatures: ``X-Cc2api-Signature: t=<unix>,v1=<hex>``, as Stripe signs its own.

``hex`` is HMAC-SHA256 with the secret as key over ``f"{t}.{body}"``: the timestamp is
signed with the body, so a receiver that refuses old timestamps refuses replays.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = [
    "SECRET_PREFIX",
    "SIGNATURE_HEADER",
    "new_webhook_secret",
    "signature",
    "signature_header",
    "verify",
]

SIGNATURE_HEADER = "X-Cc2api-Signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SECRET_BYTES = 32


def new_webhook_secret() -> str:
    """Return a fresh webhook secret: the prefix and 256 random bits, URL-safe base64."""
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Return the hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` keyed with ``secret``."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """Return the value of ``X-Cc2api-Signature`` for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, now: int, tolerance: int = 300) -> bool:
    """Return whether ``header`` signs ``body`` with ``secret``, ``tolerance`` s from ``now``.

    Any of several ``v1=`` values may match (a header signed during a rotation); one
    that is not ASCII is a mismatch, compared as bytes in constant time.
    """
    pairs = [part.strip().split("=", 1) for part in header.split(",") if "=" in part]
    stamps = [value for key, value in pairs if key == "t"]
    signatures = [value.encode() for key, value in pairs if key == "v1"]
    try:
        timestamp = int(stamps[0])
    except (IndexError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).encode()
    return any(hmac.compare_digest(expected, given) for given in signatures)
