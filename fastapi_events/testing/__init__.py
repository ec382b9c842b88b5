"""Helpers for testing apps that dispatch events.

``capture_events()`` records every event dispatched while it is active - from requests served by any app, from
handlers, from tasks, from other threads - as ``(name, payload)`` tuples in dispatch order. Handlers still run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from .. import _hooks
from .._names import event_name_str
from .._runtime import drain
from ..brokers.memory import DeadLetterRecord, InMemoryBroker, TopicSnapshot
from ..typing import Event


class CapturedEvents(list):  # type: ignore[type-arg]
    """A ``list`` of ``(name, payload)`` tuples with a few conveniences for assertions."""

    @property
    def names(self) -> list[str]:
        """Event names as strings (``Enum`` members by value), in dispatch order."""
        return [event_name_str(name) for name, _ in self]

    def payloads(self, name: Any) -> list[Any]:
        """The payloads of the events called ``name`` (``str`` or ``Enum``), in dispatch order."""
        wanted = event_name_str(name)
        return [payload for event_name, payload in self if event_name_str(event_name) == wanted]

    def append(self, event: Event) -> None:
        # Tracing may attach data to the event tuple; record the plain pair users compare against.
        super().append((event[0], event[1]) if type(event) is not tuple else event)


class _Capture:
    def __init__(self) -> None:
        self.events = CapturedEvents()

    def __enter__(self) -> CapturedEvents:
        _hooks.recorders.append(self.events)
        return self.events

    def __exit__(self, *exc_info: object) -> None:
        _hooks.recorders.remove(self.events)

    async def __aenter__(self) -> CapturedEvents:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__(*exc_info)


def capture_events() -> _Capture:
    """``with capture_events() as events:`` (or ``async with``): record dispatched events while the block runs."""
    return _Capture()


@contextmanager
def disabled_dispatch() -> Iterator[None]:
    """Suppress every ``dispatch()`` inside the block (like ``FASTAPI_EVENTS_DISABLE_DISPATCH=1``)."""
    import os

    from ..constants import FASTAPI_EVENTS_DISABLE_DISPATCH_ENV_VAR as key

    previous = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


@asynccontextmanager
async def handled_events(timeout: float | None = 10.0) -> AsyncIterator[CapturedEvents]:
    """Like ``capture_events()``, and on exit wait (``drain``) until every captured event was handled."""
    with capture_events() as events:
        yield events
        await drain(timeout)


__all__ = [
    "CapturedEvents",
    "DeadLetterRecord",
    "InMemoryBroker",
    "TopicSnapshot",
    "capture_events",
    "disabled_dispatch",
    "handled_events",
]
