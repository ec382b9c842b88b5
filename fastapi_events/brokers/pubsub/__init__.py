"""Google Cloud Pub/Sub (``pip install "fastapi-events[google]"``): forwarder, transport, consumer source."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports

if TYPE_CHECKING:
    from ._errors import BrokerUnreachableError, classify
    from ._forwarder import GoogleCloudSimplePubSubHandler
    from ._source import PubSubSource
    from ._transport import SERVER_MAX_BATCH_COUNT, SERVER_MAX_REQUEST_BYTES, PubSubTransport, encoded_message_size

# Every name needs the SDK: looking one up without it raises an ImportError naming the extra.
__getattr__ = lazy_exports(
    __name__,
    {
        "._forwarder": ("GoogleCloudSimplePubSubHandler",),
        "._errors": ("BrokerUnreachableError", "classify"),
        "._source": ("PubSubSource",),
        "._transport": (
            "SERVER_MAX_BATCH_COUNT",
            "SERVER_MAX_REQUEST_BYTES",
            "PubSubTransport",
            "encoded_message_size",
        ),
    },
    requires=("google.cloud.pubsub_v1", "google"),
)

__all__ = [
    "SERVER_MAX_BATCH_COUNT",
    "SERVER_MAX_REQUEST_BYTES",
    "BrokerUnreachableError",
    "GoogleCloudSimplePubSubHandler",
    "PubSubSource",
    "PubSubTransport",
    "classify",
    "encoded_message_size",
]
