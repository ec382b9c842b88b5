"""An in-memory broker for the tracing tests: a delivery-layer Transport on the producing side and a consumer
Source on the consuming side, so the real ForwardHandler and the real Consumer runner carry the trace context.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fastapi_events.consumer import Consumer, Delivery
from fastapi_events.delivery import DELIVERED, EntryResult, OutboundMessage, Outcome
from fastapi_events.handlers.local import LocalHandler


class LoopbackTransport:
    system = "loopback"
    max_batch_count = 10
    max_batch_bytes = 256 * 1024
    max_message_bytes = 256 * 1024

    def __init__(self, destination: str = "events-queue", reject: bool = False) -> None:
        self.destination = destination
        self.reject = reject
        self.sent: list[OutboundMessage] = []  # not yet consumed, in order
        self.batches: list[list[OutboundMessage]] = []

    def message_size(self, message: OutboundMessage) -> int:
        return len(message.body) + sum(len(k) + len(v) for k, v in message.attributes.items())

    async def open(self) -> None:
        return None

    async def send_batch(self, batch: Sequence[OutboundMessage]) -> Sequence[EntryResult]:
        self.batches.append(list(batch))
        if self.reject:
            return [EntryResult(Outcome.PERMANENT, "rejected by test") for _ in batch]
        self.sent.extend(batch)
        return [DELIVERED for _ in batch]

    async def close(self) -> None:
        return None


class LoopbackSource:
    """Hands the given messages to a Consumer, then asks it to stop once all were acknowledged."""

    redelivers = False

    def __init__(self, transport: LoopbackTransport, messages: Sequence[OutboundMessage]) -> None:
        self.system = transport.system
        self.destination = transport.destination
        self.pending = [Delivery(m.body, dict(m.attributes), m.id) for m in messages]
        self.expected = len(self.pending)
        self.acked: list[str] = []
        self.dead: list[str] = []
        self.consumer: Consumer | None = None

    async def open(self) -> None:
        return None

    async def receive(self, max_messages: int) -> Sequence[Delivery]:
        batch, self.pending = self.pending[:max_messages], self.pending[max_messages:]
        if not batch:
            await asyncio.sleep(0.01)
        return batch

    def _settled(self) -> None:
        if len(self.acked) + len(self.dead) == self.expected and self.consumer is not None:
            self.consumer.stop()

    async def ack(self, delivery: Delivery) -> None:
        self.acked.append(delivery.message_id)
        self._settled()

    async def retry_later(self, delivery: Delivery, delay: float) -> None:
        raise AssertionError("loopback does not redeliver")

    async def dead_letter(self, delivery: Delivery, reason: str, event_name: str | None, attempts: int) -> None:
        self.dead.append(delivery.message_id)
        self._settled()

    async def release(self, delivery: Delivery) -> None:
        return None

    async def close(self) -> None:
        return None


async def _consume(source: LoopbackSource, handler: LocalHandler) -> int:
    consumer = Consumer(source, handler, concurrency=1, shutdown_timeout=5)
    source.consumer = consumer
    if source.expected:
        await asyncio.wait_for(consumer.run(), 10)
    return len(source.acked)


def consume_all(transport: LoopbackTransport, handler: LocalHandler, count: int | None = None) -> int:
    """Run the real Consumer over the first ``count`` (default: all) messages sent; returns how many were acked."""
    take = len(transport.sent) if count is None else count
    messages, transport.sent = transport.sent[:take], transport.sent[take:]
    return asyncio.run(_consume(LoopbackSource(transport, messages), handler))
