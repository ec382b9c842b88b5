"""An in-memory :class:`~fastapi_events.consumer.Source` recording what the runner does with each message."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from fastapi_events.codec import encode_event
from fastapi_events.consumer import Delivery


@dataclass
class FakeSource:
    system: str = "fake"
    destination: str = "fake-queue"
    redelivers: bool = False
    queue: asyncio.Queue[Delivery] = field(default_factory=asyncio.Queue)
    acked: list[str] = field(default_factory=list)
    dead: list[tuple[str, str, str | None, int]] = field(default_factory=list)
    handed_back: list[tuple[str, float]] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    opened: bool = False
    closed: bool = False
    fail_dead_letter: int = 0  # the first N dead-letter attempts raise
    _seq: int = 0

    def put(self, body: bytes, *, lane: Hashable | None = None, attempt: int = 1, message_id: str | None = None) -> str:
        self._seq += 1
        mid = message_id or f"m{self._seq}"
        self.queue.put_nowait(Delivery(body, {}, mid, lane=lane, attempt=attempt))
        return mid

    def put_event(self, name: str, payload: object = None, **kwargs: object) -> str:
        return self.put(encode_event((name, payload)), **kwargs)  # type: ignore[arg-type]

    async def open(self) -> None:
        self.opened = True

    async def receive(self, max_messages: int) -> Sequence[Delivery]:
        out: list[Delivery] = []
        try:
            out.append(await asyncio.wait_for(self.queue.get(), 0.05))
        except asyncio.TimeoutError:
            return out
        while len(out) < max_messages and not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out

    async def ack(self, delivery: Delivery) -> None:
        self.acked.append(delivery.message_id)

    async def retry_later(self, delivery: Delivery, delay: float) -> None:
        self.handed_back.append((delivery.message_id, delay))
        # Redeliver at once with the broker's count going up, like SQS after a visibility timeout.
        self.queue.put_nowait(
            Delivery(delivery.body, delivery.attributes, delivery.message_id, attempt=delivery.attempt + 1)
        )

    async def dead_letter(self, delivery: Delivery, reason: str, event_name: str | None, attempts: int) -> None:
        if self.fail_dead_letter:
            self.fail_dead_letter -= 1
            raise ConnectionError("dead-letter destination unreachable")
        self.dead.append((delivery.message_id, reason, event_name, attempts))

    async def release(self, delivery: Delivery) -> None:
        self.released.append(delivery.message_id)

    async def close(self) -> None:
        self.closed = True
