"""The in-memory consumer :class:`~fastapi_events.consumer.Source`: reads a topic of an ``InMemoryBroker``.

Messages with a key share a lane (handled one at a time, in order), as Kafka keys do. With ``redelivers`` a
failed message is handed back and comes again after the retry delay with its attempt count one higher (SQS,
Pub/Sub); without, the runner retries in-process while the message stays leased (Kafka, Redis Streams).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from ...consumer import Delivery, dead_letter_attributes
from ._topic import DeadLetterRecord, StoredMessage, Topic, decoded

# How long one receive() waits for a message before returning empty-handed (the runner calls again).
_POLL = 0.05
_TICK = 0.005


class MemorySource:
    system = "memory"

    def __init__(self, topic: Topic, *, redelivers: bool = False, limit: int | None = None) -> None:
        self._topic = topic
        self.limit = limit  # receive no more than this many messages in all
        self.received = 0
        self.destination = topic.name
        self.redelivers = redelivers
        self.opened = False
        self.closed = False
        self._mine: set[str] = set()  # leased to this source and not settled yet

    def _fail(self, operation: str) -> None:
        """Raise if the topic is unreachable or a failure of ``operation`` was injected (lock held)."""
        topic = self._topic
        if topic.unreachable:
            raise ConnectionError(f"in-memory topic {self.destination!r} is unreachable")
        if topic.take_failure(operation) is not None:
            raise ConnectionError(f"{operation} on {self.destination!r} failed (InMemoryBroker.fail_next())")

    async def open(self) -> None:
        with self._topic.lock:
            self._fail("open")
        self.opened = True

    async def receive(self, max_messages: int) -> Sequence[Delivery]:
        deadline = time.monotonic() + _POLL
        while True:
            with self._topic.lock:
                self._fail("receive")
                if self.limit is not None:
                    max_messages = min(max_messages, self.limit - self.received)
                taken = self._topic.take(max_messages, time.monotonic())
                self._mine.update(message.id for message in taken)
                self.received += len(taken)
            if taken or time.monotonic() >= deadline:
                return [self._delivery(message) for message in taken]
            await asyncio.sleep(_TICK)

    @staticmethod
    def _delivery(message: StoredMessage) -> Delivery:
        return Delivery(
            message.body,
            dict(message.attributes),
            message.id,
            lane=message.key,
            attempt=message.deliveries,
            token=message,
        )

    def finished(self) -> bool:
        """The limit was reached and everything received was settled."""
        with self._topic.lock:
            return self.limit is not None and self.received >= self.limit and not self._mine

    async def ack(self, delivery: Delivery) -> None:
        topic = self._topic
        with topic.lock:
            try:
                self._fail("ack")
            except ConnectionError:
                topic.requeue(delivery.message_id)  # as a broker does once the lease of an unacked message ends
                self._mine.discard(delivery.message_id)
                raise
            self._mine.discard(delivery.message_id)
            if topic.settle(delivery.message_id) is not None:
                topic.acked.append(delivery.message_id)

    async def retry_later(self, delivery: Delivery, delay: float) -> None:
        with self._topic.lock:
            self._topic.handed_back.append((delivery.message_id, delay))
            self._mine.discard(delivery.message_id)
            self._topic.later_by(delivery.message_id, delay)

    async def dead_letter(self, delivery: Delivery, reason: str, event_name: str | None, attempts: int) -> None:
        attributes = dead_letter_attributes(delivery, reason, event_name, self.destination, attempts)
        name, payload = decoded(delivery.body, event_name or delivery.attributes.get("event_name", ""))
        record = DeadLetterRecord(name, payload, reason, delivery.message_id, attempts, "consume", attributes)
        with self._topic.lock:
            self._fail("dead_letter")
            self._topic.settle(delivery.message_id)
            self._mine.discard(delivery.message_id)
            self._topic.dead.append(record)

    async def release(self, delivery: Delivery) -> None:
        with self._topic.lock:
            self._topic.released.append(delivery.message_id)
            self._mine.discard(delivery.message_id)
            self._topic.requeue(delivery.message_id)

    async def close(self) -> None:
        # A broker redelivers what a departed consumer never settled once its lease runs out: at once, here.
        with self._topic.lock:
            for message_id in self._mine:
                self._topic.requeue(message_id)
            self._mine.clear()
        self.closed = True


__all__ = ["MemorySource"]
