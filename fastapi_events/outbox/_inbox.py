"""``Inbox``: a consumer's handler applies each event once, even when the event is delivered again.

Delivery is at least once: a consumer that crashed after its commit but before the ack, or a broker duplicate,
hands the same event over again. The handler records "event id handled by this handler" in the same transaction
as its own effects; a redelivery finds the record and skips, and if the first transaction rolled back there is no
record, so the redelivery applies the event. The insert is ``ON CONFLICT DO NOTHING`` on the primary key
``(handler, event_id)``, so two concurrent deliveries of one event cannot both pass: the second waits for the
first transaction and then sees its record.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from .._event_meta import EventMeta


class Inbox:
    """The table of events each handler has applied. Pass ``metadata=Base.metadata`` to manage it with Alembic,
    or create it with ``inbox.table.create(engine, checkfirst=True)``."""

    def __init__(self, table_name: str = "fastapi_events_inbox", metadata: sa.MetaData | None = None) -> None:
        self.table = sa.Table(
            table_name,
            metadata if metadata is not None else sa.MetaData(),
            sa.Column("handler", sa.String(255), primary_key=True),
            sa.Column("event_id", sa.String(64), primary_key=True),
            sa.Column("handled_at", sa.Float, nullable=False),
        )

    def _insert(self, dialect: str, event: EventMeta | str, handler: str) -> Any:
        values = {
            "handler": handler,
            "event_id": event.id if isinstance(event, EventMeta) else event,
            "handled_at": time.time(),
        }
        # RETURNING rather than rowcount, which not every driver reports for ON CONFLICT DO NOTHING.
        if dialect == "postgresql":
            return postgresql.insert(self.table).values(values).on_conflict_do_nothing().returning(self.table.c.handler)
        if dialect == "sqlite":
            return sqlite.insert(self.table).values(values).on_conflict_do_nothing().returning(self.table.c.handler)
        raise NotImplementedError(f"Inbox supports PostgreSQL and SQLite, not {dialect}")

    def claim(self, session: Session, event: EventMeta | str, handler: str) -> bool:
        """Record ``event`` (its :class:`EventMeta` or id) as handled by ``handler`` in ``session``'s transaction.

        ``True``: first time - apply the event, then commit (the record commits with your changes). ``False``:
        already applied by a committed transaction - skip it.
        """
        statement = self._insert(session.get_bind().dialect.name, event, handler)
        return session.execute(statement).first() is not None

    async def claim_async(self, session: AsyncSession, event: EventMeta | str, handler: str) -> bool:
        """:meth:`claim` for an ``AsyncSession``."""
        statement = self._insert(session.get_bind().dialect.name, event, handler)
        return (await session.execute(statement)).first() is not None

    def forget_before(self, session: Session, before: float) -> int:
        """Delete records older than ``before`` (epoch seconds), once redeliveries that old cannot happen."""
        result = session.execute(sa.delete(self.table).where(self.table.c.handled_at < before))
        return int(result.rowcount)  # type: ignore[attr-defined]


__all__ = ["Inbox"]
