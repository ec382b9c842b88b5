"""``SQLAlchemyOutbox``: events committed in the application's own database transaction, delivered at least once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from .._names import event_name_str
from .._report import ErrorHook
from .._runtime import Runtime, event_store
from .._schedule import check_event_id
from ..codec import encode_event, new_event_id, trace_context
from ..delivery import RetryPolicy, StoredRecord
from ..errors import ConfigurationError
from ..typing import Event
from . import _session, _store
from ._db import Database
from ._notify import listen
from ._relay import Deliverer, Relay
from ._store import Record, ScheduledEvent
from ._table import PENDING, build_table, channel_for, upgrade_statements
from ._targets import build_targets

logger = logging.getLogger("fastapi_events.outbox")

# Staged rows that are not plain inserts say so under this key (never a column name).
_OP = "_fastapi_events_op"
_INSERT_ONCE = "insert-once"
_CANCEL = "cancel"

KeyFunction = Callable[[Event], "str | None"]


#: The former name of the outbox's dead-letter records, now :class:`~fastapi_events.delivery.StoredRecord` (its
#: ``handler`` and ``time`` are the record's ``destination`` and ``created_at``).
OutboxDeadLetter = StoredRecord


class SQLAlchemyOutbox:
    """The transactional outbox: ``dispatch(..., session=s)`` writes the event in ``s``'s transaction; after the
    commit the middleware's handlers get it (never after a rollback), at least once per handler, even if the
    process dies (a relay - this app's or a standalone one - delivers what is left).

    Pass it to ``EventHandlerASGIMiddleware(..., outbox=outbox)``. ``key(event) -> str | None``: events with the
    same key reach each handler in commit order, one at a time. ``relay=False`` only writes (standalone relays
    deliver). ``lease`` seconds: how long a claimed row is reserved to a relay (renewed while its handlers
    run); a dead relay's rows are taken over once it expires. ``retention`` seconds keeps finished rows that long
    (default: deleted at once, in batches).
    """

    def __init__(
        self,
        engine: sa.Engine | AsyncEngine,
        table_name: str = "fastapi_events_outbox",
        metadata: sa.MetaData | None = None,
        key: KeyFunction | None = None,
        relay: bool = True,
        create_table: bool = True,
        *,
        lease: float = 30.0,
        poll_interval: float = 2.0,
        batch_size: int = 500,
        retry: RetryPolicy | None = None,
        retention: float | None = None,
    ) -> None:
        self.db = Database(engine)
        self.engine = engine
        self.table_name = table_name
        self.table: sa.Table = build_table(table_name, metadata if metadata is not None else sa.MetaData())
        self.key = key
        self.relay = relay
        self.create_table = create_table
        self.lease = lease
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.retry = retry or RetryPolicy()
        self.retention = retention
        self.owner = uuid.uuid4().hex
        self.channel = channel_for(table_name)
        self._handlers: tuple[Any, ...] = ()
        self._on_error: ErrorHook | None = None
        self._runtime: Runtime | None = None
        self._deliverer: Deliverer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._background: list[asyncio.Task[None]] = []
        self._relay: Relay | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    # -- wiring ----------------------------------------------------------------------------------------------

    def bind(self, runtime: Runtime) -> None:
        """Deliver to ``runtime``'s handlers (its :class:`~fastapi_events.middleware.EventHandlerASGIMiddleware`
        does this once, as does a standalone relay); the runtime starts and stops the outbox."""
        self._handlers = runtime.handlers
        self._on_error = runtime.on_error
        self._runtime = runtime
        self._deliverer = None

    def _get_deliverer(self) -> Deliverer:
        if self._deliverer is None:
            self._deliverer = Deliverer(
                self.db,
                f"outbox:{self.table_name}",
                self.table,
                self.owner,
                build_targets(self._handlers),
                self.retry,
                self.lease,
                self.retention is not None,
                self._on_error,
            )
        return self._deliverer

    async def start(self) -> None:
        """Create (or check) the table; with ``relay=True`` start this process's relay. Idempotent."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._background:
            return
        self._loop = loop
        await self.db.run(self._prepare_table)
        if not self.relay:
            return
        self._wake = asyncio.Event()
        relay = Relay(self._get_deliverer(), self.batch_size, self.poll_interval, self.retention, self._wake)
        self._relay = relay
        self._background = [loop.create_task(relay.run(), name=f"outbox-relay:{self.table_name}")]
        if self.db.is_postgres:
            self._background.append(loop.create_task(listen(self.db, self.channel, self._wake.set)))

    def _prepare_table(self, conn: sa.Connection) -> None:
        if self.db.dialect == "sqlite" and conn.engine.url.database not in (None, "", ":memory:"):
            # WAL lets the app's transactions, relays and the command line read while one of them writes.
            with contextlib.suppress(sa.exc.DBAPIError):
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        if self.db.is_postgres:
            # Replicas deployed together would otherwise race to create (or upgrade) the table, and PostgreSQL
            # fails all but one of them on its catalog's unique index. Held until this transaction commits.
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": f"fastapi_events:{self.table}"}
            )
        if sa.inspect(conn).has_table(self.table_name, schema=self.table.schema):
            self._upgrade_table(conn)
            return
        if not self.create_table:
            raise ConfigurationError(
                f"the outbox table {self.table_name!r} does not exist and SQLAlchemyOutbox(create_table=False): "
                "create it first (e.g. an Alembic migration autogenerated with metadata=Base.metadata)"
            )
        self.table.create(conn, checkfirst=True)

    def _upgrade_table(self, conn: sa.Connection) -> None:
        statements = upgrade_statements(conn, self.table)
        if not statements:
            return
        if not self.create_table:
            raise ConfigurationError(
                f"the outbox table {self.table_name!r} was created by fastapi-events 1.0 and lacks the due-time "
                "column of delayed events; SQLAlchemyOutbox(create_table=False), so migrate it first: "
                + "; ".join(statements)
            )
        logger.warning("outbox: upgrading the table %r for delayed events: %s", self.table_name, "; ".join(statements))
        for statement in statements:
            conn.exec_driver_sql(statement)

    async def stop(self, timeout: float | None = None) -> None:
        """Stop the relay after its current round and wait (up to ``timeout`` seconds) for deliveries in flight."""
        if self._relay is not None:
            self._relay.stopping = True
            self._wake_relay()
        # The relay's task comes first in _background; the LISTEN task after it never ends by itself.
        running = [t for t in [*self._background[:1], *self._inflight] if not t.get_loop().is_closed()]
        if running:
            _, pending = await asyncio.wait(running, timeout=timeout)
            if pending:
                logger.warning(
                    "outbox: %d delivery round(s) still running at shutdown; a relay delivers their events again "
                    "once the lease expires",
                    len(pending),
                )
        for task in self._background:  # the listener, and a relay stuck past the timeout
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._background = []
        self._relay = None
        self.db.close()

    # -- the dispatch side (no I/O until the session commits) --------------------------------------------------

    def encode(self, event: Event, due: float | None = None, event_id: str | None = None) -> dict[str, Any]:
        """The row for ``event``; raises ``SerializationError`` (or the key function's error) at the call site.

        ``due``: epoch seconds a delayed event is due at. ``event_id``: the caller's id (see :meth:`cancel`);
        such a row is not written if an undelivered event already has the id.
        """
        name = event_name_str(event[0])
        body = encode_event(event).decode("utf-8")
        key = self.key(event) if self.key is not None else None
        now = time.time()
        # Events the process can deliver itself are leased to it from the start: no relay claims them unless
        # the process dies first. Keyed and delayed events always go through a claim (which keeps keys in order
        # and delayed events until their due time).
        mine = self.relay and key is None and due is None
        row = {
            "event_id": event_id or new_event_id(),
            "event_name": name,
            "body": body,
            "headers": None,
            "key": key,
            "created_at": now,
            "state": PENDING,
            "done_handlers": "[]",
            "attempts": 0,
            "next_attempt_at": now if due is None else due,
            "due_at": due,
            "lease_owner": self.owner if mine else None,
            "lease_until": now + self.lease if mine else None,
        }
        if event_id is not None:
            row[_OP] = _INSERT_ONCE
        return row

    def stage(self, session: Any, row: dict[str, Any], event: Event) -> None:
        """Add the row to ``session``'s transaction (written just before it commits); no I/O."""
        headers = trace_context(event)
        if headers:
            row["headers"] = json.dumps(headers)
        _session.stage(session, self, row)

    def cancel(self, session: Any, event_id: str) -> None:
        """Cancel the undelivered event ``event_id`` (a delayed one, typically) when ``session`` commits.

        Staged like ``dispatch(..., session=session)``: no I/O now; a rollback leaves the event scheduled. A cancel
        committed before the event's due time means no handler gets it; an unknown id is no error.
        """
        _session.stage(session, self, {_OP: _CANCEL, "event_id": check_event_id(event_id)})

    def write(self, session: Session, rows: list[dict[str, Any]]) -> None:
        conn = session.connection()
        t = self.table
        plain: list[dict[str, Any]] = []
        # In call order: seq is the order keyed events are handled in, and a cancel applies to the events
        # dispatched with its id before it, not after.
        for row in [*rows, None]:
            if row is not None and _OP not in row:
                plain.append(row)
                continue
            if plain:
                seqs = conn.execute(t.insert().returning(t.c.seq, sort_by_parameter_order=True), plain).scalars()
                for written, seq in zip(plain, seqs.all(), strict=True):
                    written["seq"] = seq
                plain = []
            if row is None:
                break
            if row[_OP] == _INSERT_ONCE:
                row["seq"] = _store.insert_once(conn, t, {k: v for k, v in row.items() if k != _OP})
            else:
                _store.cancel(conn, t, [row["event_id"]])
        if self.db.is_postgres and any(row.get("lease_owner", self.owner) is None for row in rows):
            _store.notify(conn, self.channel)

    def committed(self, rows: list[dict[str, Any]]) -> None:
        """After the commit (any thread): deliver our rows now or after the response; wake the relay for others."""
        # Rows not written (a caller's id already taken) and cancels are nobody's to deliver.
        written = [row for row in rows if row.get("seq") is not None]
        mine = [_record(row) for row in written if row["lease_owner"] == self.owner]
        if len(mine) < len(written):
            self._call_in_loop(self._wake_relay)
        if not mine:
            return
        buffer = event_store.get(None)
        if buffer is not None and not buffer.live and buffer.runtime is self._runtime:
            # Inside a request: handled with the request's other events, once the response is sent.
            if buffer.committed is None:
                buffer.committed = []
            buffer.committed.extend(mine)
            return
        self._call_in_loop(self.spawn, mine)

    def _wake_relay(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _call_in_loop(self, func: Callable[..., None], *args: Any) -> None:
        running = asyncio._get_running_loop()
        if running is not None:
            func(*args)
            return
        loop = self._loop or (self._runtime.loop if self._runtime is not None else None)
        if loop is None or loop.is_closed():
            return  # nobody to deliver here: the rows wait for a relay once their lease expires
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(func, *args)

    def spawn(self, records: list[Record]) -> None:
        task = asyncio.get_running_loop().create_task(self.deliver(records))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        if self._runtime is not None:
            self._runtime.track(task)  # fastapi_events.drain() and shutdown wait for it

    async def deliver(self, records: list[Record]) -> None:
        """Hand committed rows leased to this process to the handlers and record the outcome."""
        try:
            await self._get_deliverer().process(records)
        except Exception:
            logger.exception(
                "outbox: delivering %d committed event(s) failed; a relay retries once their lease expires",
                len(records),
            )

    # -- dead letters (the inspector and the command line) -----------------------------------------------------

    async def dead_letters(self, limit: int = 100) -> list[StoredRecord]:
        """The newest ``limit`` dead letters, oldest first, with their payloads."""
        return await self.db.run(_store.list_dead, self.table, limit, True)

    async def replay(self, ids: Sequence[str] | None = None) -> int:
        """Make dead letters (all, or these event ids) pending again; handlers that have the event are skipped."""
        count = await self.db.run(self._replay, None if ids is None else list(ids))
        self._wake_relay()
        return count

    def _replay(self, conn: sa.Connection, ids: list[str] | None) -> int:
        count = _store.replay(conn, self.table, ids, time.time())
        if count and self.db.is_postgres:
            _store.notify(conn, self.channel)
        return count

    # -- scheduled events (the inspector and the command line) -------------------------------------------------

    async def scheduled(self, limit: int = 100, *, event_name: str | None = None) -> list[ScheduledEvent]:
        """Delayed events not due yet (only those named ``event_name``, if given), soonest first."""
        return await self.db.run(_store.list_scheduled, self.table, time.time(), limit, event_name)

    async def cancel_scheduled(self, ids: Sequence[str]) -> int:
        """Cancel undelivered events by id now, in a transaction of its own; returns how many were cancelled.

        From application code, :meth:`cancel` (staged with the session) is usually what you want.
        """
        return await self.db.run(_store.cancel, self.table, [check_event_id(i) for i in ids])

    async def purge(self, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (all, or these event ids); returns how many."""
        return await self.db.run(_store.purge, self.table, None if ids is None else list(ids))

    def __repr__(self) -> str:
        return f"SQLAlchemyOutbox({self.db.sync_engine.url.render_as_string()!r}, table_name={self.table_name!r})"


def _record(row: dict[str, Any]) -> Record:
    headers = row["headers"]
    return Record(
        row["seq"],
        row["event_id"],
        row["event_name"],
        row["body"],
        json.loads(headers) if headers else None,
        row["key"],
        row["created_at"],
    )


__all__ = ["OutboxDeadLetter", "SQLAlchemyOutbox"]
