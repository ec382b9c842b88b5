"""Apache Kafka (``pip install "fastapi-events[kafka]"``): forwarder, transport, consumer source."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports

if TYPE_CHECKING:
    from ._forwarder import KafkaForwardHandler
    from ._source import KafkaSource
    from ._transport import KafkaTransport

# Every name needs the SDK: looking one up without it raises an ImportError naming the extra.
__getattr__ = lazy_exports(
    __name__,
    {
        "._forwarder": ("KafkaForwardHandler",),
        "._source": ("KafkaSource",),
        "._transport": ("KafkaTransport",),
    },
    requires=("confluent_kafka", "kafka"),
)

__all__ = ["KafkaForwardHandler", "KafkaSource", "KafkaTransport"]
