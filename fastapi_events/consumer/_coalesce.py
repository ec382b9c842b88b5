"""Coalescing acknowledgements: one broker round trip for all the messages finished in the same loop tick.

Handlers finish in bursts (a batch arrives, the handlers run concurrently, they finish together). Sending one
XACK/DeleteMessageBatch for such a burst instead of one per message is most of a consumer's throughput, and
each caller still waits for *its* acknowledgement to be confirmed, so "ack after success" keeps its meaning.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    """``await submit(item)`` returns once ``flush(items)`` - called with every item submitted in the same tick,
    at most ``max_items`` at a time - has completed, and raises what that flush raised."""

    def __init__(self, flush: Callable[[list[T]], Awaitable[None]], max_items: int = 1000) -> None:
        self._flush = flush
        self.max_items = max_items
        self._items: list[T] = []
        self._done: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> None:
        loop = asyncio.get_running_loop()
        if self._done is None or len(self._items) >= self.max_items:
            self._start_batch(loop)
        assert self._done is not None
        done = self._done
        self._items.append(item)
        # Shielded: a caller cancelled while waiting must not cancel the acknowledgement of the others.
        await asyncio.shield(done)

    def _start_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._done is not None:
            self._send()  # the current batch is full
        self._items, self._done = [], loop.create_future()
        # call_soon runs after the callbacks already queued for this tick, so their submits join this batch.
        loop.call_soon(self._send_if_current, self._done)

    def _send_if_current(self, done: asyncio.Future[None]) -> None:
        if self._done is done:
            self._send()

    def _send(self) -> None:
        items, done = self._items, self._done
        self._items, self._done = [], None
        if done is None or not items:
            return
        task = asyncio.get_running_loop().create_task(self._run(items, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, items: list[T], done: asyncio.Future[None]) -> None:
        try:
            await self._flush(items)
        except BaseException as exc:
            if not done.done():
                done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not done.done():
                done.set_result(None)
        finally:
            # Nobody may be waiting any more (callers cancelled): do not warn about an unretrieved error.
            if done.done() and not done.cancelled():
                done.exception()

    async def aclose(self) -> None:
        """Send what is waiting and wait for every flush in progress."""
        self._send()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


__all__ = ["Coalescer"]
