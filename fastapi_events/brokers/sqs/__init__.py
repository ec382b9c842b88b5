"""Amazon SQS (``pip install "fastapi-events[aws]"``): forwarder, transport, consumer source."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports

if TYPE_CHECKING:
    from ._forwarder import SQSForwardHandler
    from ._source import SQSSource
    from ._transport import SQS_MAX_BATCH_COUNT, SQS_MAX_BYTES, MessageIdFunction, SQSTransport

# Every name needs the SDK: looking one up without it raises an ImportError naming the extra.
__getattr__ = lazy_exports(
    __name__,
    {
        "._forwarder": ("SQSForwardHandler",),
        "._source": ("SQSSource",),
        "._transport": ("SQS_MAX_BATCH_COUNT", "SQS_MAX_BYTES", "MessageIdFunction", "SQSTransport"),
    },
    requires=("boto3", "aws"),
)

__all__ = [
    "SQS_MAX_BATCH_COUNT",
    "SQS_MAX_BYTES",
    "MessageIdFunction",
    "SQSForwardHandler",
    "SQSSource",
    "SQSTransport",
]
