"""Backpressure: callers that wait in line for room in a forwarder's bounded in-memory queue.

A full queue never discards an event while the broker is healthy: the dispatching request's ASGI call waits here
until delivered events make room, so the server slows down exactly as a route awaiting the SDK itself would.
Memory stays bounded by the app's own concurrency: each waiting request holds only its own events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")  # what a waiter hands in (messages)
E = TypeVar("E")  # what it gets back once admitted (entries)


class RoomWaiter(Generic[T, E]):
    """One caller's events waiting for room; ``admitted`` grows as room frees, in the caller's order."""

    __slots__ = ("admitted", "future", "remaining")

    def __init__(self, remaining: Sequence[T]) -> None:
        self.remaining: Sequence[T] = remaining
        self.admitted: list[E] = []
        # True: everything admitted; False: released with ``remaining`` left (the broker is down).
        self.future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()


class RoomLine(Generic[T, E]):
    """First come, first served: a caller that waits keeps its place while it is admitted piece by piece, and
    newcomers queue behind it, so events enter the queue in the order they were dispatched."""

    def __init__(self) -> None:
        self._line: deque[RoomWaiter[T, E]] = deque()

    def __len__(self) -> int:
        return len(self._line)

    def items(self) -> int:
        return sum(len(waiter.remaining) for waiter in self._line if not waiter.future.done())

    def join(self, items: Sequence[T]) -> RoomWaiter[T, E]:
        waiter: RoomWaiter[T, E] = RoomWaiter(items)
        self._line.append(waiter)
        return waiter

    def fill(self, room: int, admit: Callable[[Sequence[T]], list[E]]) -> int:
        """Admit waiters' items, oldest first, into ``room`` places; returns the places used."""
        used = 0
        line = self._line
        while line and used < room:
            waiter = line[0]
            if waiter.future.done():  # cancelled (the request went away); its caller reports what it held
                line.popleft()
                continue
            take = room - used
            part, waiter.remaining = waiter.remaining[:take], waiter.remaining[take:]
            waiter.admitted += admit(part)
            used += len(part)
            if not waiter.remaining:
                line.popleft()
                waiter.future.set_result(True)
        return used

    def release_all(self) -> None:
        """Let every waiter go with what it still holds: the broker is down, waiting would not make room."""
        line, self._line = self._line, deque()
        for waiter in line:
            if not waiter.future.done() and not waiter.future.get_loop().is_closed():
                waiter.future.set_result(False)

    def leave(self, waiter: RoomWaiter[T, E]) -> None:
        """The caller stopped waiting (cancelled): its remaining items are no longer admitted."""
        with contextlib.suppress(ValueError):  # admitted completely meanwhile
            self._line.remove(waiter)


__all__ = ["RoomLine", "RoomWaiter"]
