"""Driving a :class:`WebhookForwardHandler` from a test, as the middleware would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from fastapi_events.delivery import OutboundMessage
from fastapi_events.typing import Event
from fastapi_events.webhooks import WebhookForwardHandler


class DeadLetters:
    """``on_dead_letter`` collecting ``(event name, webhook id, reason)``."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []

    def __call__(self, message: OutboundMessage, reason: str) -> None:
        self.items.append((message.event_name, message.id, reason))

    def reasons(self) -> list[str]:
        return [reason for _, _, reason in self.items]


async def send(forwarder: WebhookForwardHandler, events: Sequence[Event], flush: float = 60.0) -> None:
    """Start, hand ``events`` over, wait for every lane to resolve them, stop."""
    await forwarder.startup()
    try:
        await forwarder.handle_many(list(events))
        await forwarder.flush(flush)
    finally:
        await forwarder.shutdown(5.0)


async def hand_over(forwarder: WebhookForwardHandler, events: Sequence[Event], flush: float = 30.0) -> None:
    """One request's worth of events to a started forwarder, waiting until every lane resolved them."""
    await forwarder.handle_many(list(events))
    await forwarder.flush(flush)


async def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    """Poll ``condition`` (state kept by a server thread, which cannot set an asyncio.Event of this loop)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


def events(name: str, count: int) -> list[tuple[str, dict[str, Any]]]:
    return [(name, {"n": n}) for n in range(count)]
