"""The handler protocol every built-in and custom handler follows."""

from __future__ import annotations

from collections.abc import Iterable

from .._report import report_failure
from ..typing import Event


class BaseEventHandler:
    """Base class for event handlers.

    The middleware calls :meth:`handle_many` with one request's events, in dispatch order. A subclass overrides
    either :meth:`handle_many` (batch-aware, preferred when defined) or :meth:`handle` (one event at a time).

    Optional lifecycle hooks, all no-ops by default, are driven by the middleware:

    * :meth:`startup` once at ASGI lifespan startup;
    * :meth:`flush` by :func:`fastapi_events.drain` - return once every event accepted so far is delivered
      (or durably stored / dead-lettered);
    * :meth:`shutdown` at lifespan shutdown, after the last events were handed over - flush and release resources.
    """

    async def handle(self, event: Event) -> None:
        raise NotImplementedError(f"{type(self).__qualname__} must implement handle() or handle_many()")

    async def handle_many(self, events: Iterable[Event]) -> None:
        # One failing event must not stop the rest of the batch.
        for event in events:
            try:
                await self.handle(event)
            except Exception as exc:
                report_failure(event, self, exc)

    async def startup(self) -> None:
        return None

    async def flush(self, timeout: float | None = None) -> None:
        return None

    async def shutdown(self, timeout: float | None = None) -> None:
        await self.flush(timeout)


__all__ = ["BaseEventHandler", "report_failure"]
