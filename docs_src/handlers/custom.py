from collections.abc import Iterable

from fastapi_events import report_failure
from fastapi_events.handlers.base import BaseEventHandler
from fastapi_events.typing import Event


class AuditTrail(BaseEventHandler):
    """Keeps every event of a request as one batch; refuses payloads that are not dicts."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []

    async def handle(self, event: Event) -> None:  # one event (used when handle_many is not defined)
        await self.handle_many([event])

    async def handle_many(self, events: Iterable[Event]) -> None:  # a request's events, in dispatch order
        batch = []
        for event in events:
            if not isinstance(event[1], dict):
                # Report this event (logged at ERROR, passed to on_error) and go on with the others.
                report_failure(event, self, TypeError("payload must be a dict"))
                continue
            batch.append(event)
        self.batches.append(batch)
