"""The outbox table behind the ``spool`` command-line verbs (``list``, ``dead-letters``, ``replay``, ``purge``,
``stats``): given a database URL instead of a spool file, they work on the outbox's dead letters the same way.

:class:`OutboxAdmin` implements :class:`~fastapi_events.delivery.StoreAdmin`, as a spool file does, so the verbs
treat both alike; the "destination" of an outbox dead letter is the handler(s) that gave up on it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import sqlalchemy as sa

from .._schedule import check_event_id
from ..delivery import ADMIN_BATCH, StoredRecord, id_chunks, in_batches
from . import _store
from ._db import Database, make_engine
from ._store import ScheduledEvent
from ._table import build_table, channel_for, upgrade_statements


class OutboxAdmin:
    """Synchronous access for the command line (one short-lived engine)."""

    def __init__(self, url: str, table_name: str = "fastapi_events_outbox") -> None:
        engine = make_engine(url, sync=True)
        assert isinstance(engine, sa.Engine)
        database = engine.url.database
        sqlite_file = engine.url.get_backend_name() == "sqlite" and database not in (None, "", ":memory:")
        if sqlite_file and not os.path.exists(str(database)):  # connecting would create an empty file
            raise FileNotFoundError(f"no database file at {database}")
        self.engine = engine
        self.db = Database(engine)
        self.url = engine.url.render_as_string()
        self.table = build_table(table_name, sa.MetaData())
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table_name):
                raise FileNotFoundError(f"no outbox table {table_name!r} in {self.url}")

    def close(self) -> None:
        self.engine.dispose()

    def _matches(self, record: StoredRecord, destination: str | None) -> bool:
        return destination is None or destination in record.destination.split(", ")

    def list_pending(self, destination: str | None = None) -> list[StoredRecord]:
        rows = self.db.run_blocking(_store.list_pending, self.table, None)
        records = [
            StoredRecord(StoredRecord.PENDING, 0, event_id, key or "", name, 0, attempts, error or "", created_at)
            for event_id, name, attempts, created_at, error, key in rows
        ]
        return [r for r in records if destination is None or r.destination == destination]

    def list_dead(
        self, destination: str | None = None, *, limit: int | None = None, payloads: bool = False
    ) -> list[StoredRecord]:
        records = self.db.run_blocking(_store.list_dead, self.table, None, payloads)
        records = [r for r in records if self._matches(r, destination)]
        return records if limit is None else records[len(records) - limit :] if limit else []

    def count_dead(self, destination: str | None = None) -> int:
        if destination is None:
            return self.db.run_blocking(_store.counts, self.table)["dead"]
        return len(self.list_dead(destination))

    def _ids(self, ids: Sequence[str] | None, destination: str | None) -> list[str] | None:
        if destination is None:
            return None if ids is None else list(ids)
        chosen = [r.id for r in self.list_dead(destination)]
        return chosen if ids is None else [i for i in chosen if i in set(ids)]

    def replay(self, ids: Sequence[str] | None, destination: str | None = None) -> tuple[int, list[StoredRecord]]:
        """In transactions of at most ``ADMIN_BATCH`` rows, as a spool file's (the app's commits go in between)."""
        moved = 0
        for chunk in id_chunks(self._ids(ids, destination)):

            def work(conn: sa.Connection, chunk: Sequence[str] | None = chunk) -> int:
                count = _store.replay(conn, self.table, chunk, time.time(), ADMIN_BATCH)
                if count and self.db.is_postgres:
                    _store.notify(conn, channel_for(self.table.name))
                return count

            moved += in_batches(partial(self.db.run_blocking, work))
        return moved, []

    def purge(self, ids: Sequence[str] | None, destination: str | None = None, *, pending: bool = False) -> int:
        removed = 0
        for chunk in id_chunks(self._ids(ids, destination)):
            removed += in_batches(partial(self.db.run_blocking, _store.purge, self.table, chunk, pending, ADMIN_BATCH))
        return removed

    def list_scheduled(self, event_name: str | None = None) -> list[ScheduledEvent]:
        """Delayed events not due yet (only those named ``event_name``, if given), soonest first."""
        upgrade = self.db.run_blocking(upgrade_statements, self.table)
        if upgrade:
            # A table of 1.0 has no delayed events (and no column to list them by) until an app upgrades it.
            return []
        return self.db.run_blocking(_store.list_scheduled, self.table, time.time(), None, event_name)

    def cancel(self, ids: Sequence[str]) -> int:
        """Cancel undelivered events by id (a relay handing one over right now still finishes it).

        Raises ``ValueError`` for what can be no event id (checked before any I/O).
        """
        return self.db.run_blocking(_store.cancel, self.table, [check_event_id(i) for i in ids])

    def stats(self) -> dict[str, Any]:
        counts = self.db.run_blocking(_store.counts, self.table)
        destinations: dict[str, dict[str, Any]] = {}
        for record in self.list_dead():
            item = destinations.setdefault(record.destination, {"pending": 0, "oldest_pending_at": None})
            item["dead_letters"] = item.get("dead_letters", 0) + 1
        return {
            "path": self.url,
            "table": self.table.name,
            "bytes": 0,
            "pending": counts["pending"],
            "done": counts["done"],
            "dead_letters": counts["dead"],
            "destinations": destinations,
        }


__all__ = ["OutboxAdmin"]
