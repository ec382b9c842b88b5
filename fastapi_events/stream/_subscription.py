"""A subscriber's bounded queue: filled synchronously by the fan-out, drained by one consumer task."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Callable, Iterable
from fnmatch import translate
from typing import TYPE_CHECKING, Any

from ..errors import FastapiEventError
from ._entry import Key, StreamEvent

if TYPE_CHECKING:
    from ._hub import Hub

logger = logging.getLogger("fastapi_events.stream")

#: ``filter(connection, event) -> bool``: False hides the event from that subscriber.
EventFilter = Callable[[Any, Any], bool]


class SubscriptionOverflow(FastapiEventError):
    """The subscriber fell more than its queue size behind and was cut off; resume with the last id it got."""


def parse_patterns(events: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"order.*,user.*"`` or ``["order.*", "user.*"]`` -> patterns; empty means every event."""
    if events is None:
        return ()
    items = events.split(",") if isinstance(events, str) else [part for item in events for part in item.split(",")]
    return tuple(dict.fromkeys(item.strip() for item in items if item.strip()))


class Subscription:
    """Events of one subscriber, in stream order, starting after ``last_event_id`` (or now).

    Use it as ``async with stream.subscribe("order.*") as subscription: async for event in subscription: ...``.
    Iteration ends when the stream shuts down and raises :class:`SubscriptionOverflow` when the subscriber fell
    more than ``maxsize`` events behind. ``gap`` is set when the requested id was no longer in the history.
    """

    def __init__(
        self,
        hub: Hub,
        patterns: tuple[str, ...],
        *,
        maxsize: int,
        last_event_id: str | None = None,
        replay: bool = False,
        connection: Any = None,
        event_filter: EventFilter | None = None,
    ) -> None:
        self.hub = hub
        self.patterns = patterns
        self.maxsize = maxsize
        self.last_event_id = last_event_id
        self.replay = replay
        self.connection = connection
        self.event_filter = event_filter
        self.pending: deque[StreamEvent] = deque()
        #: ``{"last_event_id": ..., "first_id": ...}`` when resuming skipped events that were no longer kept.
        self.gap: dict[str, Any] | None = None
        self.overflowed = False
        self.closed = False
        #: Set by keep-alive timers; the consumer sends a comment and clears it.
        self.ping = False
        # Entries up to this key were already delivered (a resume ahead of this process' Redis reader).
        self.skip_until: Key | None = None
        self._regex = re.compile("|".join(translate(p) for p in patterns)).match if patterns else None
        self._matches: dict[str, bool] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._on_stop: Callable[[], None] | None = None

    # -- producer side (the fan-out, synchronous) -------------------------------------------------------------------

    def wants(self, name: str) -> bool:
        regex = self._regex
        if regex is None:
            return True
        hit = self._matches.get(name)
        if hit is None:
            if len(self._matches) > 1024:  # unbounded distinct names must not grow memory
                self._matches.clear()
            hit = self._matches[name] = regex(name) is not None
        return hit

    def offer(self, entry: StreamEvent) -> None:
        if self.overflowed or self.closed or not self.wants(entry.name):
            return
        if self.skip_until is not None:
            if entry.key <= self.skip_until:
                return
            self.skip_until = None
        if self.event_filter is not None and not self._visible(entry):
            return
        pending = self.pending
        if len(pending) >= self.maxsize:
            self.overflowed = True
            pending.clear()  # the subscriber resumes from its last id; holding more helps nobody
            self._stop()
        else:
            pending.append(entry)
        self.wake()

    def _visible(self, entry: StreamEvent) -> bool:
        assert self.event_filter is not None
        try:
            return bool(self.event_filter(self.connection, entry.event))
        except Exception:
            # A broken filter hides the event from this subscriber only; everyone else still gets it.
            logger.exception("stream filter failed for event %r; hiding it from this subscriber", entry.name)
            return False

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        loop = waiter.get_loop()
        if asyncio._get_running_loop() is loop:
            waiter.set_result(None)
        else:  # fan-out from another loop or thread (TestClient's portal)
            loop.call_soon_threadsafe(_settle, waiter)

    def close(self) -> None:
        """End the subscription (server shutdown, client gone); the consumer finishes what it is doing."""
        if not self.closed:
            self.closed = True
            self._stop()
            self.wake()

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the subscription overflows or is closed (endpoints arm a send deadline)."""
        self._on_stop = callback

    def _stop(self) -> None:
        callback, self._on_stop = self._on_stop, None
        if callback is not None:
            callback()

    # -- consumer side ------------------------------------------------------------------------------------------

    async def wait(self) -> None:
        """Until there is something to do: events, an overflow, the end, or a keep-alive."""
        if self.pending or self.overflowed or self.closed or self.ping:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def take(self) -> list[StreamEvent]:
        pending = self.pending
        batch = list(pending)
        pending.clear()
        return batch

    async def open(self) -> Subscription:
        await self.hub.attach(self)
        return self

    async def aclose(self) -> None:
        self.hub.detach(self)
        self.close()

    async def __aenter__(self) -> Subscription:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> StreamEvent:
        while True:
            if self.pending:
                return self.pending.popleft()
            if self.overflowed:
                raise SubscriptionOverflow(
                    f"subscription to {list(self.patterns) or '*'} fell more than {self.maxsize} events behind"
                )
            if self.closed:
                raise StopAsyncIteration
            self.ping = False
            await self.wait()


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


__all__ = ["EventFilter", "Subscription", "SubscriptionOverflow", "parse_patterns"]
