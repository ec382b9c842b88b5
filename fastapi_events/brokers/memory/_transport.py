"""The in-memory :class:`~fastapi_events.delivery.Transport`: a forwarder's batches land in a topic's list."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ...delivery import DELIVERED, EntryResult, OutboundMessage, Outcome
from ._topic import StoredMessage, Topic

#: Generous, but bounded like every real broker, so that the size checks of the delivery layer run too.
MAX_MESSAGE_BYTES = 1024 * 1024


class MemoryTransport:
    """Appends each message to ``topic``; injected failures answer as a broker would (see ``InMemoryBroker``)."""

    system = "memory"
    max_batch_count = 100
    max_batch_bytes = 10 * MAX_MESSAGE_BYTES
    max_message_bytes = MAX_MESSAGE_BYTES

    def __init__(self, topic: Topic) -> None:
        self._topic = topic
        self.destination = topic.name

    def message_size(self, message: OutboundMessage) -> int:
        size = len(message.body) + len(message.key or "")
        return size + sum(len(k) + len(v) for k, v in message.attributes.items())

    async def open(self) -> None:
        with self._topic.lock:
            if self._topic.unreachable:
                raise ConnectionError(f"in-memory topic {self.destination!r} is unreachable")

    async def send_batch(self, batch: Sequence[OutboundMessage]) -> Sequence[EntryResult]:
        topic = self._topic
        if topic.send_delay:
            await asyncio.sleep(topic.send_delay)  # a broker's round trip: the loop serves requests meanwhile
        results: list[EntryResult] = []
        with topic.lock:
            if topic.unreachable:
                raise ConnectionError(f"in-memory topic {self.destination!r} is unreachable")
            for message in batch:
                failure = topic.take_failure("send")
                if failure is not None:
                    outcome = Outcome.PERMANENT if failure.permanent else Outcome.RETRY
                    results.append(EntryResult(outcome, "refused by InMemoryBroker.fail_next()"))
                    continue
                topic.ready.append(StoredMessage(message.id, message.body, dict(message.attributes), message.key))
                results.append(DELIVERED)
        return results

    async def close(self) -> None:
        return None


__all__ = ["MAX_MESSAGE_BYTES", "MemoryTransport"]
