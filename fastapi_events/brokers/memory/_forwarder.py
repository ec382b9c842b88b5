"""The in-memory forwarder: the real :class:`~fastapi_events.delivery.ForwardHandler` writing to a topic."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ...delivery import DeadLetterCallback, ForwardHandler, OutboundMessage, split_options
from ._topic import DeadLetterRecord, Topic, decoded
from ._transport import MemoryTransport

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ...delivery import DeliveryKwargs


class InMemoryForwardHandler(ForwardHandler):
    """Forwards to a topic of an ``InMemoryBroker`` (build it with ``InMemoryBroker.forwarder``); its dead
    letters are also recorded on the topic, next to the consumers'."""

    def __init__(self, topic: Topic, **options: Unpack[DeliveryKwargs]) -> None:
        delivery, _ = split_options(type(self).__name__, options)
        self._user_callback: DeadLetterCallback | None = delivery.on_dead_letter
        self._topic = topic
        super().__init__(MemoryTransport(topic), replace(delivery, on_dead_letter=self._record_dead_letter))

    async def _record_dead_letter(self, message: OutboundMessage, reason: str) -> None:
        name, payload = decoded(message.body, message.event_name)
        record = DeadLetterRecord(name, payload, reason, message.id, 0, "forward", dict(message.attributes))
        with self._topic.lock:
            self._topic.dead.append(record)
        if self._user_callback is not None:
            result = self._user_callback(message, reason)
            if result is not None:
                await result


__all__ = ["InMemoryForwardHandler"]
