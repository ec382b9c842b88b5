"""Bounded in-memory queue used when a forwarder has no ``spool_path``."""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Sequence

from ._room import RoomLine, RoomWaiter
from ._store import DeadLetter, Entry, Retry
from ._transport import OutboundMessage

logger = logging.getLogger("fastapi_events.delivery")


class MemoryStore:
    """Fresh entries in FIFO order plus a heap of entries waiting for their retry time.

    The bound covers everything held (fresh, waiting, being sent) so that a long broker outage cannot exhaust
    memory. When it is hit, the *incoming* events wait in line (:meth:`wait_for_room`) until delivered ones
    make room: backpressure on the requests that dispatch them. Only the forwarder decides to give up on them
    (the broker is down), and then it reports each one.
    """

    durable = False

    def __init__(self, max_size: int, destination: str = "") -> None:
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self.max_size = max_size
        self.destination = destination
        self._fresh: deque[Entry] = deque()
        self._waiting: list[tuple[float, int, Entry]] = []
        self._in_flight: dict[int, Entry] = {}
        # Batches requests handed to the broker themselves, by token (their first seq), until reported on.
        self._direct: dict[int, Sequence[OutboundMessage]] = {}
        self._direct_count = 0
        self._seq = 0
        self._line: RoomLine[OutboundMessage, Entry] = RoomLine()

    def __len__(self) -> int:
        return len(self._fresh) + len(self._waiting) + len(self._in_flight) + self._direct_count

    def queued(self) -> int:
        return len(self)

    async def add(self, messages: Sequence[OutboundMessage]) -> tuple[list[Entry], list[OutboundMessage]]:
        """Store what fits, unless others wait in line for room; returns ``(entries, messages not stored)``."""
        if self._line:
            return [], list(messages)
        room = max(0, self.max_size - len(self))
        if room >= len(messages):
            return self._admit(messages), []
        return self._admit(messages[:room]), list(messages[room:])

    def wait_for_room(self, messages: Sequence[OutboundMessage]) -> RoomWaiter[OutboundMessage, Entry]:
        """Queue ``messages`` behind earlier waiters; they are stored as room frees (see :class:`RoomLine`)."""
        waiter = self._line.join(messages)
        self._make_room()
        return waiter

    def leave_line(self, waiter: RoomWaiter[OutboundMessage, Entry]) -> None:
        self._line.leave(waiter)

    def release_waiters(self) -> None:
        self._line.release_all()

    @property
    def waiting_for_room(self) -> int:
        """Messages waiting in line for room."""
        return self._line.items()

    def _admit(self, messages: Sequence[OutboundMessage]) -> list[Entry]:
        seq = self._seq
        accepted = [Entry(seq + i, message) for i, message in enumerate(messages, 1)]
        self._seq = seq + len(accepted)
        self._fresh.extend(accepted)
        return accepted

    def can_bypass(self, count: int) -> bool:
        """Whether ``count`` new events may be handed to the broker at once (:meth:`admit_in_flight`): nothing
        waits to go before them and they fit."""
        return not self._fresh and not self._line and len(self) + count <= self.max_size

    def admit_in_flight(self, messages: Sequence[OutboundMessage]) -> int:
        """Hold ``messages`` as being sent already: a request hands them to the broker itself. Returns the batch's
        token. They become entries only when their reports are not all "delivered" (:meth:`take_direct`)."""
        token = self._seq + 1
        self._seq += len(messages)
        self._direct[token] = messages
        self._direct_count += len(messages)
        return token

    def forget(self, token: int) -> Sequence[OutboundMessage]:
        """A directly sent batch was delivered: it leaves. Returns its messages."""
        messages = self._direct.pop(token, ())
        self._direct_count -= len(messages)
        if self._line:
            self._make_room()
        return messages

    def take_direct(self, token: int) -> list[Entry]:
        """A directly sent batch as entries being sent, to be filed as a round's are (:meth:`resolve`)."""
        messages = self._direct.pop(token, ())
        self._direct_count -= len(messages)
        entries = [Entry(token + index, message) for index, message in enumerate(messages)]
        self._in_flight.update([(entry.seq, entry) for entry in entries])
        return entries

    def direct_ids(self) -> list[str]:
        return [message.id for messages in self._direct.values() for message in messages]

    def _make_room(self) -> None:
        if self._line:
            self._line.fill(self.max_size - len(self), self._admit)

    async def due(self, now: float, limit: int) -> tuple[list[Entry], float | None]:
        batch: list[Entry] = []
        # Retries first: they are the oldest events.
        while self._waiting and self._waiting[0][0] <= now and len(batch) < limit:
            batch.append(heapq.heappop(self._waiting)[2])
        while self._fresh and len(batch) < limit:
            batch.append(self._fresh.popleft())
        for entry in batch:
            self._in_flight[entry.seq] = entry
        next_at = self._waiting[0][0] if self._waiting else None
        if self._fresh:
            next_at = now
        return batch, next_at

    async def resolve(
        self, delivered: Sequence[Entry], retries: Sequence[Retry], dead: Sequence[tuple[Entry, DeadLetter]]
    ) -> None:
        for entry in delivered:
            self._in_flight.pop(entry.seq, None)
        for entry, _ in dead:
            self._in_flight.pop(entry.seq, None)
        for retry in retries:
            self._in_flight.pop(retry.entry.seq, None)
            heapq.heappush(self._waiting, (retry.next_attempt_at, retry.entry.seq, retry.entry))
        self._make_room()

    async def add_dead(self, dead: Sequence[DeadLetter]) -> None:
        # Without a spool there is nowhere durable to keep them: the forwarder logs and reports each one.
        return None

    def drain_all(self) -> list[Entry]:
        """Remove and return every entry held, including those whose send was cut short (used at shutdown to
        report what is lost)."""
        for token in list(self._direct):
            self.take_direct(token)
        entries = list(self._in_flight.values()) + list(self._fresh) + [item[2] for item in self._waiting]
        self._in_flight.clear()
        self._fresh.clear()
        self._waiting.clear()
        self._line.release_all()
        return entries

    def report_lost(self) -> int:
        """At shutdown: log every entry still held, one ERROR each, and return how many there were."""
        lost = self.drain_all()
        for entry in lost:
            logger.error(
                "event %r (id %s) LOST at shutdown: not delivered to %s and no spool_path is set",
                entry.message.event_name,
                entry.message.id,
                self.destination,
                extra={"event_name": entry.message.event_name, "event_id": entry.message.id},
            )
        return len(lost)

    def reset_in_flight(self) -> None:
        """Requeue entries of a sender task that died with its event loop: they may not have been sent."""
        for token in list(self._direct):
            self.take_direct(token)
        for entry in sorted(self._in_flight.values(), key=lambda e: e.seq, reverse=True):
            self._fresh.appendleft(entry)
        self._in_flight.clear()
        self._line.release_all()  # their requests ran on the old loop, which is gone

    async def close(self) -> None:
        return None


__all__ = ["MemoryStore"]
