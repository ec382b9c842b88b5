"""Forwarding events to a Google Cloud Pub/Sub topic (install ``fastapi-events[google]``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from google.cloud.pubsub_v1.types import BatchSettings, PublisherOptions

from ...codec import Serializer
from ...delivery import BaseDeliveryKwargs, ForwardHandler, KeyFunction, split_options
from ...errors import ConfigurationError
from ._transport import SERVER_MAX_BATCH_COUNT, SERVER_MAX_REQUEST_BYTES, PubSubTransport

if TYPE_CHECKING:
    from typing_extensions import Unpack


class PubSubForwarderKwargs(BaseDeliveryKwargs, total=False):
    id_generator: Callable[[], str] | None


class GoogleCloudSimplePubSubHandler(ForwardHandler):
    """Publishes every event to one Pub/Sub topic, body ``["event name", payload]`` as JSON.

    Each message carries the attributes ``event_name`` and ``event_id`` (plus ``traceparent``/``tracestate``
    when tracing is active). Events are accepted at once and published by a background task that awaits every
    publish future; transient failures are retried, permanent ones (missing topic, no permission, message over
    10 MB) become dead letters. The keyword options include the delivery options every forwarder takes
    (:class:`~fastapi_events.delivery.DeliveryOptions`: ``spool_path``, ``retry``, ``on_dead_letter``...).

    ``max_batch_size`` and ``batch_settings_kwargs`` (``max_messages``, ``max_bytes``, ``max_latency`` of
    ``google.cloud.pubsub_v1.types.BatchSettings``) size the batches of both the delivery layer and the
    client, so that one batch is one publish request: at most 1 000 messages (the service's limit) and 10 MB
    by default. ``max_bytes`` also bounds a single message, since a message must fit in a request.

    ``key(event) -> str | None`` (or its older name ``ordering_key``) turns on message ordering: events with
    the same key are published in order (the subscription needs ``enable_message_ordering``).
    ``publisher_options`` and ``client_kwargs`` go to ``PublisherClient``; by default the client does not retry
    by itself (the delivery layer does) and a publish request times out after ``publish_timeout`` seconds.
    """

    def __init__(
        self,
        project_id: str,
        topic_id: str,
        max_batch_size: int = 1000,
        batch_settings_kwargs: Mapping[str, Any] | None = None,
        serializer: Serializer | None = None,
        *,
        ordering_key: KeyFunction | None = None,
        publisher_options: PublisherOptions | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
        publish_timeout: float = 30.0,
        **options: Unpack[PubSubForwarderKwargs],
    ) -> None:
        if not project_id or not topic_id:
            raise ConfigurationError("GoogleCloudSimplePubSubHandler needs a project_id and a topic_id")
        if not 1 <= max_batch_size <= SERVER_MAX_BATCH_COUNT:
            raise ConfigurationError(f"max_batch_size must be between 1 and {SERVER_MAX_BATCH_COUNT} for Pub/Sub")
        settings: dict[str, Any] = {"max_messages": max_batch_size, "max_bytes": SERVER_MAX_REQUEST_BYTES}
        settings.update(batch_settings_kwargs or {})
        try:
            batch_settings = BatchSettings(**settings)
        except TypeError as exc:
            raise ConfigurationError(f"invalid batch_settings_kwargs: {exc}") from exc
        if not (
            1 <= batch_settings.max_messages <= SERVER_MAX_BATCH_COUNT
            and 1 <= batch_settings.max_bytes <= SERVER_MAX_REQUEST_BYTES
            and batch_settings.max_latency >= 0
        ):
            raise ConfigurationError(
                f"invalid batch settings {batch_settings}: Pub/Sub takes 1-{SERVER_MAX_BATCH_COUNT} messages "
                f"and at most {SERVER_MAX_REQUEST_BYTES} bytes per request"
            )

        if ordering_key is not None:
            if options.get("key") is not None:
                raise ConfigurationError("pass key= or its older name ordering_key=, not both")
            options["key"] = ordering_key
        delivery, _ = split_options(type(self).__name__, {**options, "serializer": serializer})

        self.project_id = project_id
        self.topic_id = topic_id
        self.max_batch_size = max_batch_size
        self.batch_settings = batch_settings
        transport = PubSubTransport(
            project_id,
            topic_id,
            batch_settings=batch_settings,
            ordering=delivery.key is not None,
            publisher_options=publisher_options,
            client_kwargs=client_kwargs,
            publish_timeout=publish_timeout,
        )
        super().__init__(transport, delivery)

    @property
    def topic_path(self) -> str:
        """``projects/<project_id>/topics/<topic_id>``."""
        return self.transport.destination


__all__ = ["GoogleCloudSimplePubSubHandler"]
