"""Rounds handed to a buffering SDK whose delivery reports are still to come.

With a transport that ``submit``-s (librdkafka, Pub/Sub's publisher), a round's events are safe from the
request's loop once the SDK holds them: the sender submits the next round at once instead of waiting for the
broker's acknowledgements, so a producer handing over 10 events at a time is not held to one round trip each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger("fastapi_events.delivery")

#: Rounds whose reports may be outstanding at once. Their entries count towards ``max_queue_size`` until the
#: reports are in, which bounds memory; this bounds the tasks, and must allow for small rounds: a producer handing
#: over 10 events at a time makes a round of 10 each time, and every round waits a broker round trip.
MAX_ROUNDS_IN_FLIGHT = 256


class RoundsInFlight:
    def __init__(self, on_done: Callable[[], None], limit: int = MAX_ROUNDS_IN_FLIGHT) -> None:
        self._on_done = on_done
        self.limit = limit
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    async def start(self, make_round: Callable[[asyncio.Future[None]], Coroutine[Any, Any, None]]) -> None:
        """Run ``make_round(submitted)`` and return once it set ``submitted`` (its events are in the SDK's hands)
        or ended, and fewer than ``limit`` rounds wait for their reports."""
        submitted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(make_round(submitted))
        self.track(task)
        await asyncio.wait((task, submitted), return_when=asyncio.FIRST_COMPLETED)
        while len(self._tasks) >= self.limit:
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep ``task`` (the filing of a batch a request handed to the SDK) with the rounds: cancelled with them."""
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("delivery round failed", exc_info=task.exception())
        self._on_done()  # retries may be due now: the sender looks again

    async def cancel_all(self) -> None:
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def forget(self) -> None:
        """The event loop of these rounds is gone."""
        self._tasks = set()


__all__ = ["MAX_ROUNDS_IN_FLIGHT", "RoundsInFlight"]
