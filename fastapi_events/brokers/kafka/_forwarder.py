"""``KafkaForwardHandler``: forward events to a Kafka topic (``pip install "fastapi-events[kafka]"``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...delivery import ForwardHandler, split_options
from ._transport import KafkaTransport

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ...delivery import DeliveryKwargs


class KafkaForwardHandler(ForwardHandler):
    """Produces every event to ``topic`` with ``acks=all`` and idempotence, never blocking the request.

    An event leaves the spool only after its delivery report confirmed it. Headers carry the event name, the
    event id and the trace context; ``key`` (a callable) sets the Kafka key for per-key ordering. ``config``
    holds librdkafka settings under their own names (``{"linger.ms": 20, "security.protocol": "SSL"}``); the
    keyword options are the delivery options every forwarder takes
    (:class:`~fastapi_events.delivery.DeliveryOptions`). Read the topic with
    ``python -m fastapi_events consume kafka://HOST:PORT/TOPIC?group=G``.
    """

    def __init__(
        self,
        topic: str,
        bootstrap_servers: str,
        *,
        config: Mapping[str, Any] | None = None,
        **options: Unpack[DeliveryKwargs],
    ) -> None:
        delivery, _ = split_options(
            type(self).__name__, options, hint="librdkafka settings go in config={'linger.ms': 20, ...}"
        )
        super().__init__(KafkaTransport(topic, bootstrap_servers, config=config), delivery)


__all__ = ["KafkaForwardHandler"]
