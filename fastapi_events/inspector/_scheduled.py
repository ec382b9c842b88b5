"""Scheduled (delayed, not yet due) events of this process's outboxes: list them, cancel them by event id.

Sources are the outbox sources of :mod:`._deadletters` (the outboxes of live middlewares), named by the same ids.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .._schedule import check_event_id
from ._components import ScheduledItem
from ._deadletters import MAX_LISTED, Source, sources

_PAYLOAD_CHARS = 4000


def _item(event: ScheduledItem) -> dict[str, Any]:
    return {
        "id": event.id,
        "event": event.event_name,
        "due": event.due_at,
        "dispatched": event.created_at,
        "key": event.key,
        "payload": json.dumps(event.payload, ensure_ascii=False, default=str)[:_PAYLOAD_CHARS],
    }


async def listing() -> dict[str, Any]:
    """``GET /api/scheduled``: per outbox, its delayed events that are not due yet, soonest first."""
    listed = []
    for source in sources():
        outbox = source.outbox
        if outbox is None:
            continue
        entry: dict[str, Any] = {"id": source.id, "label": source.label}
        try:
            entry.update(items=[_item(event) for event in await outbox.scheduled(MAX_LISTED)], error=None)
        except Exception as exc:  # one unreadable outbox must not hide the others
            entry.update(items=[], error=f"{type(exc).__name__}: {exc}")
        listed.append(entry)
    return {"sources": listed}


def invalid_id(ids: Sequence[str]) -> str | None:
    """Why one of ``ids`` can be no event id (the request is refused with 400 before any I/O), or ``None``."""
    for event_id in ids:
        try:
            check_event_id(event_id)
        except ValueError as exc:
            return str(exc)
    return None


async def cancel(source: Source, ids: Sequence[str]) -> dict[str, Any]:
    """``POST /api/scheduled/cancel`` (``source`` is an outbox's)."""
    assert source.outbox is not None
    return {"cancelled": await source.outbox.cancel_scheduled(list(ids))}


__all__ = ["cancel", "invalid_id", "listing"]
