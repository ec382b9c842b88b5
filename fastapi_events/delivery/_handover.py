"""Callers waiting until the broker accepted events: requests (their own events) and flushes (all so far)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence


class _Waiter:
    __slots__ = ("future", "left")

    def __init__(self, future: asyncio.Future[bool | None], left: int) -> None:
        self.future = future
        self.left = left


class Handovers:
    """Per event id, the caller waiting for it; each id belongs to exactly one caller.

    A dict keyed by event id (rather than a list of waiters scanned per delivery round) keeps resolving a round
    proportional to the round's size however many requests are waiting.
    """

    def __init__(self) -> None:
        self._by_id: dict[str, _Waiter] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def register(self, ids: Sequence[str]) -> asyncio.Future[bool | None]:
        """A future set to True once every id is resolved, None when released early (the broker is down)."""
        future: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(future, len(ids))
        self._by_id.update(dict.fromkeys(ids, waiter))
        return future

    async def wait(self, accepted: asyncio.Future[bool | None], ids: Sequence[str], timeout: float) -> bool | None:
        """Wait for the future ``register(ids)`` returned: True once all are resolved, None when released early,
        False on timeout."""
        if accepted.done():
            return accepted.result()
        # call_later rather than wait_for: this runs once per request, and wait_for costs a second future and
        # a callback chain on top of the timer.
        timer = accepted.get_loop().call_later(timeout, _expire, accepted)
        try:
            outcome = await accepted
        finally:
            timer.cancel()
        if outcome is not True:
            self.forget(ids)
        return outcome

    def resolve(self, ids: Iterable[str]) -> None:
        by_id = self._by_id
        if not by_id:
            return
        for event_id in ids:
            waiter = by_id.pop(event_id, None)
            if waiter is None:
                continue
            waiter.left -= 1
            if waiter.left <= 0 and not waiter.future.done():
                waiter.future.set_result(True)

    def forget(self, ids: Iterable[str]) -> None:
        """The caller stopped waiting (timeout or cancellation)."""
        for event_id in ids:
            self._by_id.pop(event_id, None)

    def release_all(self) -> None:
        """Let every caller go now: waiting cannot get their events delivered any sooner (broker outage)."""
        waiters = {id(w): w for w in self._by_id.values()}
        self._by_id.clear()
        for waiter in waiters.values():
            if not waiter.future.done() and not waiter.future.get_loop().is_closed():
                waiter.future.set_result(None)


def _expire(accepted: asyncio.Future[bool | None]) -> None:
    if not accepted.done():
        accepted.set_result(False)


class Flushes:
    """``flush()`` calls, each waiting for every event outstanding when it started."""

    def __init__(self) -> None:
        self._waiting: list[tuple[set[str], asyncio.Future[None]]] = []

    def __len__(self) -> int:
        return len(self._waiting)

    def register(self, ids: Iterable[str]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((set(ids), future))
        return future

    def resolve(self, done: set[str]) -> None:
        for pending, future in self._waiting:
            pending -= done
            if not pending and not future.done():
                future.set_result(None)

    def forget(self, future: asyncio.Future[None]) -> None:
        self._waiting = [w for w in self._waiting if w[1] is not future]


__all__ = ["Flushes", "Handovers"]
