"""Where accepted events wait for delivery: the interface shared by the in-memory queue and the spool."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ._transport import OutboundMessage


@dataclass(slots=True)
class Entry:
    """An accepted event waiting for (re)delivery."""

    seq: int  # position in the store: delivery order and the handle used to resolve the entry
    message: OutboundMessage
    attempts: int = 0  # failures that count towards the retry budget
    first_failure_at: float | None = None
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class Retry:
    entry: Entry
    next_attempt_at: float  # wall-clock time.time(): survives a restart in the spool


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message: OutboundMessage
    reason: str
    attempts: int = 0
    replayable: bool = True  # False when there is no wire body (the event could not be encoded)


class PendingStore(Protocol):
    """Storage of entries for one destination. Only the forwarder's sender task calls ``due``/``resolve``."""

    durable: bool

    async def add(self, messages: Sequence[OutboundMessage]) -> tuple[list[Entry], list[OutboundMessage]]:
        """Store messages; returns ``(accepted entries, messages dropped because the store is full)``."""
        ...

    async def due(self, now: float, limit: int) -> tuple[list[Entry], float | None]:
        """Up to ``limit`` entries due at ``now``, oldest first, and when the next other entry becomes due."""
        ...

    async def resolve(
        self, delivered: Sequence[Entry], retries: Sequence[Retry], dead: Sequence[tuple[Entry, DeadLetter]]
    ) -> None:
        """Apply the outcome of a send round atomically."""
        ...

    async def add_dead(self, dead: Sequence[DeadLetter]) -> None:
        """Record dead letters that never became entries (encoding errors, oversize messages)."""
        ...

    def queued(self) -> int:
        """Entries known to wait in this store (approximate for the spool: entries added by other tools)."""
        ...

    async def close(self) -> None: ...


__all__ = ["DeadLetter", "Entry", "PendingStore", "Retry"]
