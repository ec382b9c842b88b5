"""What the consumer runner needs from a broker: receive, acknowledge, hand back, dead-letter."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# Attribute/header names of a dead letter, next to the original attributes (event name, event id, trace
# context). SQS allows only [A-Za-z0-9_.-] in attribute names; these fit every broker.
ATTR_DEAD_LETTER_REASON = "dead_letter_reason"
ATTR_DEAD_LETTER_SOURCE = "dead_letter_source"  # the queue/topic/stream the message was read from
ATTR_DEAD_LETTER_ATTEMPTS = "dead_letter_attempts"
ATTR_ORIGINAL_MESSAGE_ID = "original_message_id"

#: Longest reason kept in a dead letter: broker attribute/header limits are small and a traceback-sized
#: reason is no more useful than its first lines.
MAX_REASON_CHARS = 1000


@dataclass(slots=True)
class Delivery:
    """One message received from a broker, not yet acknowledged."""

    body: bytes
    attributes: dict[str, str]
    message_id: str  # the broker's id, for logs and dead letters
    # Deliveries sharing a lane are handled one at a time, in the order received (Kafka: partition + key).
    lane: Hashable | None = None
    attempt: int = 1  # how many times the broker has delivered it (1 when the broker does not say)
    token: Any = field(default=None, repr=False)  # broker-specific handle (receipt, offset, ack id)


def dead_letter_attributes(
    delivery: Delivery, reason: str, event_name: str | None, source: str, attempts: int
) -> dict[str, str]:
    """Attributes of the dead letter for ``delivery``: the original ones plus why, from where, how often."""
    attributes = dict(delivery.attributes)
    if event_name is not None:
        attributes.setdefault("event_name", event_name)
    attributes[ATTR_DEAD_LETTER_REASON] = reason[:MAX_REASON_CHARS]
    attributes[ATTR_DEAD_LETTER_SOURCE] = source
    attributes[ATTR_DEAD_LETTER_ATTEMPTS] = str(attempts)
    attributes[ATTR_ORIGINAL_MESSAGE_ID] = delivery.message_id
    return attributes


@runtime_checkable
class Source(Protocol):
    """A broker subscription driven by :class:`~fastapi_events.consumer.Consumer`.

    Nothing here may block the event loop. ``receive`` returns within about a second even when nothing
    arrived, so that the runner notices a shutdown request. A source with ``redelivers = True`` (SQS,
    Pub/Sub) gets failed deliveries back through ``retry_later`` and the broker delivers them again later,
    with ``attempt`` counting up; otherwise the runner retries in-process and keeps the message unacknowledged
    meanwhile (Kafka, Redis). A source may also define ``async def idle()`` (:class:`IdlingSource`).
    """

    system: str  # "kafka", "redis", "aws_sqs", "gcp_pubsub"
    destination: str  # topic / stream / queue / subscription read from
    redelivers: bool

    async def open(self) -> None: ...

    async def receive(self, max_messages: int) -> Sequence[Delivery]: ...

    async def ack(self, delivery: Delivery) -> None:
        """The message was handled: never deliver it again (commit/XACK/delete/ack)."""

    async def retry_later(self, delivery: Delivery, delay: float) -> None:
        """Hand the message back for redelivery in about ``delay`` seconds (only when ``redelivers``)."""

    async def dead_letter(self, delivery: Delivery, reason: str, event_name: str | None, attempts: int) -> None:
        """Publish the original body with :func:`dead_letter_attributes` to the dead-letter destination,
        then acknowledge the original. Raising means "not dead-lettered": the runner tries again."""

    async def release(self, delivery: Delivery) -> None:
        """Shutdown: the message will not be handled by this process; let another consumer have it soon."""

    async def close(self) -> None:
        """Commit what was acknowledged and disconnect."""


@runtime_checkable
class IdlingSource(Source, Protocol):
    """A :class:`Source` that must be called now and then to stay alive (Kafka polls to stay in its group)."""

    async def idle(self) -> None:
        """Called about twice a second while every handler slot of the consumer is busy."""


# Consumer URLs name a broker, and the brokers sit above the consumer (each broker package holds its source),
# so the consumer imports none of them: the package that knows them registers its resolver. It is looked up by
# name on first use, as a plugin's entry would be, so that ``consume("kafka://...")`` needs no import first.
_URL_PROVIDER = "fastapi_events.brokers"
_url_resolver: Callable[[str], Source] | None = None


def register_url_resolver(resolver: Callable[[str], Source]) -> None:
    """Called by :mod:`fastapi_events.brokers` as it is imported: ``resolver(url)`` builds a URL's source."""
    global _url_resolver
    _url_resolver = resolver


def source_from_url(url: str) -> Source:
    """Build the :class:`Source` a consumer URL describes (raises ``ConfigurationError`` when it is wrong)."""
    if _url_resolver is None:
        importlib.import_module(_URL_PROVIDER)
    assert _url_resolver is not None, f"{_URL_PROVIDER} registers the URL resolver when imported"
    return _url_resolver(url)


__all__ = [
    "ATTR_DEAD_LETTER_ATTEMPTS",
    "ATTR_DEAD_LETTER_REASON",
    "ATTR_DEAD_LETTER_SOURCE",
    "ATTR_ORIGINAL_MESSAGE_ID",
    "MAX_REASON_CHARS",
    "Delivery",
    "IdlingSource",
    "Source",
    "dead_letter_attributes",
    "register_url_resolver",
    "source_from_url",
]
