"""Delayed events not due yet, as the inspector and the command line list them (and cancel them by id)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    """An outbox event waiting for its due time."""

    id: str  # the event id (the caller's, with dispatch(..., event_id=...))
    event_name: str
    payload: Any
    due_at: float  # epoch seconds
    created_at: float  # epoch seconds of the dispatch call
    key: str | None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def scheduled_event(row: Sequence[Any]) -> ScheduledEvent:
    """From a row of ``_store.list_scheduled``."""
    event_id, name, body, due_at, created_at, key = row
    try:
        payload = json.loads(body)[1]
    except (ValueError, IndexError, TypeError):
        payload = body
    return ScheduledEvent(event_id, name, payload, due_at, created_at, key)


__all__ = ["ScheduledEvent", "scheduled_event"]
