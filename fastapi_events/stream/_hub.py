"""In-process fan-out: the bounded history and the subscriptions every new event is offered to."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ._entry import Key, StreamEvent, parse_key
from ._subscription import Subscription


class Hub:
    """History (bounded by count) plus live subscriptions, both touched only synchronously.

    Because attaching a subscription (history replay + registration) and publishing never await, a resuming
    subscriber sees every event exactly once: older ones from the history, newer ones live.
    """

    def __init__(self, history: int, *, ids_from_elsewhere: bool) -> None:
        self.entries: deque[StreamEvent] = deque(maxlen=history)
        #: Key of the newest event dropped from the history (anything at or below it cannot be replayed).
        self.evicted: Key | None = None
        #: Key of the newest event ever published here.
        self.last_key: Key | None = None
        # Redis: an id newer than ours was written by another process and our reader will get to it; in memory
        # it can only come from before a restart.
        self.ids_from_elsewhere = ids_from_elsewhere
        self.subscriptions: set[Subscription] = set()
        self.closed = False
        #: Awaited before the first attach (the Redis reader loads the history first).
        self.prepare: Callable[[], Awaitable[None]] | None = None

    def publish(self, entries: Iterable[StreamEvent]) -> None:
        history = self.entries
        size = history.maxlen
        subscriptions = self.subscriptions
        for entry in entries:
            if len(history) == size:
                self.evicted = history[0].key if size else entry.key
            history.append(entry)
            self.last_key = entry.key
            for subscription in subscriptions:
                subscription.offer(entry)

    def seed(self, entries: Iterable[StreamEvent], evicted: Key | None) -> None:
        """Start from a history read elsewhere (the Redis stream's tail) before anything is published."""
        self.entries.clear()
        self.entries.extend(entries)
        self.evicted = evicted
        self.last_key = self.entries[-1].key if self.entries else evicted

    async def attach(self, subscription: Subscription) -> None:
        if self.prepare is not None:
            await self.prepare()
        if self.closed:
            subscription.close()
            return
        # From here on nothing awaits: no event can slip between the replay and the registration.
        self._replay(subscription)
        self.subscriptions.add(subscription)

    def detach(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)

    def close_all(self, *, for_good: bool = True) -> None:
        """End every subscription; ``for_good`` (server stop) also ends new ones at once."""
        self.closed = for_good
        for subscription in list(self.subscriptions):
            subscription.close()
        self.subscriptions.clear()

    def _replay(self, subscription: Subscription) -> None:
        history = self.entries
        if subscription.replay:
            backlog: Iterable[StreamEvent] = history
        elif subscription.last_event_id is None:
            return
        else:
            key = parse_key(subscription.last_event_id)
            if self.ids_from_elsewhere and key is not None and (self.last_key is None or key > self.last_key):
                subscription.skip_until = key  # written by another process, not read by ours yet
                return
            lost = (
                key is None
                or (self.evicted is not None and key < self.evicted)
                or (self.last_key is None and not self.ids_from_elsewhere)
                or (self.last_key is not None and key > self.last_key)
            )
            if lost:
                subscription.gap = self._gap_info(subscription.last_event_id)
                backlog = history
            else:
                assert key is not None
                backlog = [entry for entry in history if entry.key > key]
        _extend(subscription, backlog)

    def _gap_info(self, last_event_id: str) -> dict[str, Any]:
        return {"last_event_id": last_event_id, "first_id": self.entries[0].id if self.entries else None}


def _extend(subscription: Subscription, backlog: Iterable[StreamEvent]) -> None:
    # The replay is bounded by the history already; only what arrives live counts against the queue size.
    limit = subscription.maxsize
    subscription.maxsize = sys.maxsize
    for entry in backlog:
        subscription.offer(entry)
    subscription.maxsize = limit + len(subscription.pending)


__all__ = ["Hub"]
