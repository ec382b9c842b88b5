"""The in-memory forwarder: the real :class:`~fastapi_events.delivery.ForwardHandler` writing to a topic."""

from __future__ import annotations

from typing import Any

from ...delivery.deadletters import DeadLetterCallback
from ...delivery.forwarder import ForwardHandler
from ...delivery.transport import OutboundMessage
from ._topic import DeadLetterRecord, Topic, decoded
from ._transport import MemoryTransport


class InMemoryForwardHandler(ForwardHandler):
    """Forwards to a topic of an ``InMemoryBroker`` (build it with ``InMemoryBroker.forwarder``); its dead
    letters are also recorded on the topic, next to the consumers'."""

    def __init__(self, topic: Topic, **options: Any) -> None:
        self._user_callback: DeadLetterCallback | None = options.pop("on_dead_letter", None)
        self._topic = topic
        super().__init__(MemoryTransport(topic), on_dead_letter=self._record_dead_letter, **options)

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
