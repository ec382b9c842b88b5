"""Dead letters of the mounting app's spools and outboxes: list them, replay or purge them by event id.

A *source* is one forwarder's spool (file + destination) or one transactional outbox (its async
``dead_letters()``, ``replay(ids)`` and ``purge(ids)``). POSTs name a source by the id listed here; only sources
of the mounting app are accepted, so a request can never make the inspector open a file of its choosing. Spool
files are read through a read-only SQLite connection and changed through SQLite's own locking, in a worker thread,
exactly as ``python -m fastapi_events spool`` does while the app runs; the forwarder picks replayed events up
within its relay interval.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._threads import run_sync
from ..delivery import SpoolDB, StoredRecord
from ._components import InspectedOutbox, forwarders, outboxes

#: Dead letters listed per source (the newest); counts are always complete.
MAX_LISTED = 200
_PAYLOAD_CHARS = 4000


@dataclass(frozen=True)
class Source:
    id: str
    kind: str  # "spool" or "outbox"
    label: str
    spool: tuple[str, str] | None = None  # (path, destination) of a spool
    outbox: InspectedOutbox | None = None


def sources() -> list[Source]:
    found: dict[str, Source] = {}
    for handler in forwarders():
        path = handler.spool_path
        if not path:
            continue
        destination = str(handler.transport.destination)
        source_id = f"spool:{path}#{destination}"
        found[source_id] = Source(source_id, "spool", f"{path} \u2192 {destination}", spool=(path, destination))
    for outbox in outboxes():
        source_id = f"outbox:{outbox.table_name}#{id(outbox):x}"
        found[source_id] = Source(source_id, "outbox", repr(outbox), outbox=outbox)
    return list(found.values())


def find(source_id: str) -> Source | None:
    for source in sources():
        if source.id == source_id:
            return source
    return None


def _item(record: StoredRecord, reason: str) -> dict[str, Any]:
    payload = record.payload
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, default=str)
    return {
        "id": record.id,
        "event": record.event_name,
        "reason": reason,
        "attempts": record.attempts,
        "time": record.created_at,
        "replayable": record.replayable,
        "payload": text[:_PAYLOAD_CHARS],
    }


# -- spools: read through a read-only connection, changed through SQLite's locking, as the command line does ---


def _spool_list(path: str, destination: str) -> tuple[int, list[dict[str, Any]]]:
    db = SpoolDB(path, readonly=True)
    try:
        total = db.count_dead(destination)
        records = db.list_dead(destination, limit=MAX_LISTED, payloads=True)
    finally:
        db.close()
    return total, [_item(record, record.reason) for record in reversed(records)]


def _spool_replay(path: str, destination: str, ids: Sequence[str]) -> dict[str, Any]:
    db = SpoolDB(path, create=False)
    try:
        moved, skipped = db.replay(list(ids), destination)
    finally:
        db.close()
    return {"replayed": moved, "skipped": [record.id for record in skipped]}


def _spool_purge(path: str, destination: str, ids: Sequence[str]) -> dict[str, Any]:
    db = SpoolDB(path, create=False)
    try:
        removed = db.purge(list(ids), destination)
    finally:
        db.close()
    return {"purged": removed}


# -- the views -------------------------------------------------------------------------------------------------


async def listing(recent: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``GET /api/dead-letters``."""
    listed = []
    for source in sources():
        entry: dict[str, Any] = {"id": source.id, "kind": source.kind, "label": source.label}
        try:
            if source.spool is not None:
                total, items = await run_sync(_spool_list, *source.spool)
            else:
                assert source.outbox is not None
                # The outbox lists its oldest dead letters first; no total beyond the limit.
                dead = await source.outbox.dead_letters(MAX_LISTED)
                items = [_item(record, f"{record.destination}: {record.reason}") for record in dead]
                total = len(items)
            entry.update(total=total, items=items, error=None)
        except Exception as exc:  # one unreadable source must not hide the others
            entry.update(total=None, items=[], error=f"{type(exc).__name__}: {exc}")
        listed.append(entry)
    return {"sources": listed, "recent": list(recent)}


async def act(source: Source, action: str, ids: Sequence[str]) -> dict[str, Any]:
    """Replay (``action="replay"``) or purge the dead letters ``ids`` of ``source``."""
    if source.spool is not None:
        operation = _spool_replay if action == "replay" else _spool_purge
        result: dict[str, Any] = await run_sync(operation, *source.spool, ids)
        return result
    outbox = source.outbox
    assert outbox is not None
    if action == "replay":
        return {"replayed": await outbox.replay(list(ids)), "skipped": []}
    return {"purged": await outbox.purge(list(ids))}


__all__ = ["MAX_LISTED", "Source", "act", "find", "listing", "sources"]
