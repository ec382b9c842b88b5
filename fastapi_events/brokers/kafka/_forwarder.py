"""``KafkaForwardHandler``: forward events to a Kafka topic (``pip install "fastapi-events[kafka]"``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...delivery import ForwardHandler, split_options
from ._legacy import merge, take_legacy_arguments
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

    Deprecated since 1.1, removed in 2.0 (each use warns with the new spelling): the 1.0 forms
    ``KafkaForwardHandler(topic, servers, key, serializer, spool_path)`` with positional arguments and librdkafka
    settings as keywords with underscores (``linger_ms=20`` for ``config={"linger.ms": 20}``).
    """

    def __init__(
        self,
        topic: str,
        bootstrap_servers: str,
        *legacy_positional: Any,
        config: Mapping[str, Any] | None = None,
        **options: Unpack[DeliveryKwargs],
    ) -> None:
        keywords: dict[str, Any] = dict(options)
        settings = take_legacy_arguments(legacy_positional, keywords)
        delivery, _ = split_options(
            type(self).__name__, keywords, hint="librdkafka settings go in config={'linger.ms': 20, ...}"
        )
        super().__init__(KafkaTransport(topic, bootstrap_servers, config=merge(settings, config)), delivery)


__all__ = ["KafkaForwardHandler"]
