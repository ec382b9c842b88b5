"""Google Cloud Pub/Sub support (needs ``pip install fastapi-events[google]``)."""

from __future__ import annotations

from .publisher import (
    SERVER_MAX_BATCH_COUNT,
    SERVER_MAX_REQUEST_BYTES,
    BrokerUnreachableError,
    PubSubTransport,
    classify,
    encoded_message_size,
)

__all__ = [
    "SERVER_MAX_BATCH_COUNT",
    "SERVER_MAX_REQUEST_BYTES",
    "BrokerUnreachableError",
    "PubSubTransport",
    "classify",
    "encoded_message_size",
]
