"""An in-memory broker for the tracing tests: a real delivery-layer Transport and a consumer loop over it.

The consumer loop does what every consumer does around one message: open the ``_hooks.consume`` scope with
the message's attributes, decode, run the handlers strictly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fastapi_events import _hooks
from fastapi_events.codec import decode_event
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
        self.queue: asyncio.Queue[OutboundMessage] = asyncio.Queue()
        self.batches: list[list[OutboundMessage]] = []

    def message_size(self, message: OutboundMessage) -> int:
        return len(message.body) + sum(len(k) + len(v) for k, v in message.attributes.items())

    async def open(self) -> None:
        return None

    async def send_batch(self, batch: Sequence[OutboundMessage]) -> Sequence[EntryResult]:
        self.batches.append(list(batch))
        if self.reject:
            return [EntryResult(Outcome.PERMANENT, "rejected by test") for _ in batch]
        for message in batch:
            self.queue.put_nowait(message)
        return [DELIVERED for _ in batch]

    async def close(self) -> None:
        return None


async def consume_all(transport: LoopbackTransport, handler: LocalHandler) -> int:
    """Handle every message waiting in ``transport`` as a consumer would; returns how many."""
    count = 0
    while not transport.queue.empty():
        message = transport.queue.get_nowait()
        with _hooks.consume(
            transport.system, transport.destination, message.id, message.event_name, message.attributes
        ):
            await handler.handle_strict(decode_event(message.body))
        count += 1
    return count
