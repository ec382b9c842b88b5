"""Forward events to an Amazon SQS queue (``pip install "fastapi-events[aws]"``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

from ...codec import Serializer
from ...delivery import BaseDeliveryKwargs, ForwardHandler, split_options
from ...errors import ConfigurationError
from ._transport import SQS_MAX_BATCH_COUNT, MessageIdFunction, SQSTransport

if TYPE_CHECKING:
    from typing_extensions import Unpack


class SQSClientKwargs(TypedDict, total=False):
    """The keywords ``boto3.client("sqs", ...)`` takes besides ``region_name``."""

    endpoint_url: str | None
    aws_access_key_id: str | None
    aws_secret_access_key: str | None
    aws_session_token: str | None
    aws_account_id: str | None
    api_version: str | None
    use_ssl: bool
    verify: bool | str | None
    config: Any  # botocore.config.Config; merged over ours (no SDK retries, 5 s connect timeout)


class SQSForwarderKwargs(BaseDeliveryKwargs, SQSClientKwargs, total=False):
    pass


class SQSForwardHandler(ForwardHandler):
    """Forward every event to one SQS queue as ``["event name", payload]`` JSON (or ``serializer(event)``).

    Signature of fastapi-events 0.x; ``queue_url`` may also be a queue name. Keyword options: the delivery
    options every forwarder takes (:class:`~fastapi_events.delivery.DeliveryOptions`: ``spool_path``,
    ``retry``, ``on_dead_letter``, ``flush_timeout``...), the ``boto3.client`` settings (``endpoint_url``,
    credentials, ``config``) and, for FIFO queues (``.fifo``), ``message_group_id`` and ``deduplication_id``
    callables taking the :class:`~fastapi_events.delivery.OutboundMessage`. Any other keyword is a
    ``TypeError``.
    """

    def __init__(
        self,
        queue_url: str,
        region_name: str | None,
        serializer: Serializer | None = None,
        id_generator: Callable[[], str] | None = None,
        max_batch_size: int = 10,
        *,
        message_group_id: MessageIdFunction | None = None,
        deduplication_id: MessageIdFunction | None = None,
        **options: Unpack[SQSForwarderKwargs],
    ) -> None:
        if not 1 <= max_batch_size <= SQS_MAX_BATCH_COUNT:
            raise ConfigurationError(f"max_batch_size must be between 1 and {SQS_MAX_BATCH_COUNT} for SQS")
        delivery, client_kwargs = split_options(
            type(self).__name__,
            {**options, "serializer": serializer, "id_generator": id_generator},
            SQSClientKwargs.__optional_keys__,
        )
        transport = SQSTransport(
            queue_url,
            region_name,
            message_group_id=message_group_id,
            deduplication_id=deduplication_id,
            max_batch_count=max_batch_size,
            **client_kwargs,
        )
        super().__init__(transport, delivery)
        self.queue_url = queue_url
        self.region_name = region_name
        self.max_batch_size = max_batch_size


__all__ = ["SQSClientKwargs", "SQSForwardHandler", "SQSForwarderKwargs"]
