"""Forward events to an Amazon SQS queue (``pip install fastapi-events[aws]``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ...codec import Serializer
from ...delivery import DeadLetterCallback, ForwardHandler, KeyFunction, RetryPolicy
from ...errors import ConfigurationError
from ._transport import SQS_MAX_BATCH_COUNT, MessageIdFunction, SQSTransport


class SQSForwardHandler(ForwardHandler):
    """Forward every event to one SQS queue as ``["event name", payload]`` JSON (or ``serializer(event)``).

    Signature of fastapi-events 0.x; ``queue_url`` may also be a queue name. The keyword-only options after
    ``max_batch_size`` are those of :class:`~fastapi_events.delivery.ForwardHandler` (``spool_path`` for
    durable delivery, ``retry``, ``on_dead_letter``...) plus, for FIFO queues (``.fifo``),
    ``message_group_id`` and ``deduplication_id`` callables taking the
    :class:`~fastapi_events.delivery.OutboundMessage`. Any other keyword goes to ``boto3.client("sqs", ...)``
    (``endpoint_url``, credentials, ``config``).
    """

    def __init__(
        self,
        queue_url: str,
        region_name: str | None,
        serializer: Serializer | None = None,
        id_generator: Callable[[], str] | None = None,
        max_batch_size: int = 10,
        *,
        spool_path: str | os.PathLike[str] | None = None,
        retry: RetryPolicy | None = None,
        max_queue_size: int = 10_000,
        on_dead_letter: DeadLetterCallback | None = None,
        key: KeyFunction | None = None,
        message_group_id: MessageIdFunction | None = None,
        deduplication_id: MessageIdFunction | None = None,
        flush_timeout: float = 30.0,
        relay_interval: float = 1.0,
        reconnect_max_delay: float = 5.0,
        **boto_client_kwargs: Any,
    ) -> None:
        if not 1 <= max_batch_size <= SQS_MAX_BATCH_COUNT:
            raise ConfigurationError(f"max_batch_size must be between 1 and {SQS_MAX_BATCH_COUNT} for SQS")
        transport = SQSTransport(
            queue_url,
            region_name,
            message_group_id=message_group_id,
            deduplication_id=deduplication_id,
            max_batch_count=max_batch_size,
            **boto_client_kwargs,
        )
        super().__init__(
            transport,
            serializer=serializer,
            spool_path=spool_path,
            retry=retry,
            max_queue_size=max_queue_size,
            on_dead_letter=on_dead_letter,
            key=key,
            id_generator=id_generator,
            flush_timeout=flush_timeout,
            relay_interval=relay_interval,
            reconnect_max_delay=reconnect_max_delay,
        )
        self.queue_url = queue_url
        self.region_name = region_name
        self.max_batch_size = max_batch_size


__all__ = ["SQSForwardHandler"]
