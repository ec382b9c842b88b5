"""Stream entry field names both sides of the Redis broker agree on."""

from __future__ import annotations

#: The codec's JSON body; every other field of an entry is a message attribute.
BODY_FIELD = b"body"
#: The forwarder's key (per-key ordering), present when the forwarder has a key function.
KEY_FIELD = "key"

__all__ = ["BODY_FIELD", "KEY_FIELD"]
