"""Standard Webhooks 1.0 signatures: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from ..errors import ConfigurationError

SECRET_PREFIX = "whsec_"
# The spec's bounds for the decoded key: shorter is guessable, longer buys nothing with SHA-256.
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64


def decode_secret(secret: str) -> bytes:
    """The HMAC key of ``whsec_<base64>``; a :class:`ConfigurationError` says what is wrong with it."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ConfigurationError("a webhook secret is 'whsec_' followed by base64 (see new_webhook_secret())")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError("the part of a webhook secret after 'whsec_' is not valid base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ConfigurationError(
            f"a webhook secret must decode to {MIN_KEY_BYTES}-{MAX_KEY_BYTES} bytes, not {len(key)}"
        )
    return key


def new_webhook_secret(size: int = 32) -> str:
    """A fresh random secret to hand to the owner of an endpoint."""
    if not MIN_KEY_BYTES <= size <= MAX_KEY_BYTES:
        raise ConfigurationError(f"size must be {MIN_KEY_BYTES}-{MAX_KEY_BYTES} bytes")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(size)).decode("ascii")


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,`` signature of one attempt (the timestamp is part of what is signed)."""
    signed = b"%s.%d.%s" % (message_id.encode("utf-8"), timestamp, body)
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def signature_matches(keys: list[bytes], message_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """True when any of the space-separated ``v1,`` signatures of ``header`` was made with any of ``keys``."""
    offered = [part for part in header.split(" ") if part.startswith("v1,")]
    for key in keys:
        expected = signature(key, message_id, timestamp, body)
        for candidate in offered:
            if hmac.compare_digest(expected.encode("ascii"), candidate.encode("utf-8", "replace")):
                return True
    return False


__all__ = ["SECRET_PREFIX", "decode_secret", "new_webhook_secret", "signature", "signature_matches"]
