"""``KafkaForwardHandler``: forward events to a Kafka topic (extra ``fastapi-events[kafka]``)."""

from __future__ import annotations

import os
from typing import Any

from ...codec import Serializer
from ...delivery import DeadLetterCallback, ForwardHandler, KeyFunction, RetryPolicy
from ._transport import KafkaTransport


class KafkaForwardHandler(ForwardHandler):
    """Produces every event to ``topic`` with ``acks=all`` and idempotence, never blocking the request.

    An event leaves the spool only after its delivery report confirmed it. Headers carry the event name, the
    event id and the trace context; ``key`` (a callable) sets the Kafka key for per-key ordering. Extra
    keyword arguments are librdkafka settings, with ``_`` for ``.`` (``linger_ms=20``,
    ``security_protocol="SSL"``). Batching, retries, ``spool_path`` and dead letters are the shared delivery
    layer's. Read the topic with ``python -m fastapi_events consume kafka://HOST:PORT/TOPIC?group=G``.
    """

    def __init__(
        self,
        topic: str,
        bootstrap_servers: str,
        key: KeyFunction | None = None,
        serializer: Serializer | None = None,
        spool_path: str | os.PathLike[str] | None = None,
        *,
        retry: RetryPolicy | None = None,
        on_dead_letter: DeadLetterCallback | None = None,
        max_queue_size: int = 10_000,
        **producer_config: Any,
    ) -> None:
        config = {name.replace("_", "."): value for name, value in producer_config.items()}
        super().__init__(
            KafkaTransport(topic, bootstrap_servers, config=config),
            serializer=serializer,
            spool_path=spool_path,
            key=key,
            retry=retry,
            on_dead_letter=on_dead_letter,
            max_queue_size=max_queue_size,
        )


__all__ = ["KafkaForwardHandler"]
