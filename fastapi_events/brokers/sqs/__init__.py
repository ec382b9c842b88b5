"""Amazon SQS support (needs ``pip install fastapi-events[aws]``)."""

from __future__ import annotations

from .publisher import SQS_MAX_BATCH_COUNT, SQS_MAX_BYTES, MessageIdFunction, SQSTransport

__all__ = ["SQS_MAX_BATCH_COUNT", "SQS_MAX_BYTES", "MessageIdFunction", "SQSTransport"]
