"""An app writing orders and their events in one transaction, for every database x session kind under test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from fastapi_events import EventHandlerASGIMiddleware, dispatch
from fastapi_events.handlers.base import BaseEventHandler
from fastapi_events.outbox import SQLAlchemyOutbox
from fastapi_events.typing import Event

metadata = sa.MetaData()
orders = sa.Table("orders", metadata, sa.Column("id", sa.Integer, primary_key=True))


class Recorder(BaseEventHandler):
    """Records every event it gets; fails the first ``failures`` attempts at each event."""

    def __init__(self, failures: int = 0) -> None:
        self.events: list[Event] = []
        self.failures = failures
        self.calls: dict[str, int] = {}

    async def handle(self, event: Event) -> None:
        event_id = getattr(event, "event_id", repr(event))
        self.calls[event_id] = self.calls.get(event_id, 0) + 1
        if self.calls[event_id] <= self.failures:
            raise RuntimeError(f"failing attempt {self.calls[event_id]}")
        self.events.append(event)

    def payloads(self) -> list[Any]:
        return [payload for _, payload in self.events]

    def __repr__(self) -> str:
        return f"Recorder#{id(self)}"


@dataclass
class Database:
    """An engine of one kind (sync or async) on one database (SQLite file or PostgreSQL)."""

    url: str
    is_async: bool

    def engine(self) -> sa.Engine | AsyncEngine:
        if self.is_async:
            return create_async_engine(self.url, pool_pre_ping=True)
        return sa.create_engine(self.url, pool_pre_ping=True)

    def sync_engine(self) -> sa.Engine:
        """A sync engine on the same database (for the test's own checks)."""
        url = self.url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")
        return sa.create_engine(url)


def outbox_app(
    engine: sa.Engine | AsyncEngine, handlers: Sequence[Any], **outbox_options: Any
) -> tuple[FastAPI, SQLAlchemyOutbox]:
    """An app (no routes yet) whose middleware has ``handlers`` and an outbox on ``engine``."""
    outbox = SQLAlchemyOutbox(engine, **outbox_options)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # As apps do: the relay has stopped by now; asyncpg connections must be closed on their own loop.
        if isinstance(engine, AsyncEngine):
            await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(EventHandlerASGIMiddleware, handlers=list(handlers), outbox=outbox)
    return app, outbox


def make_app(
    engine: sa.Engine | AsyncEngine, handlers: Sequence[Any], **outbox_options: Any
) -> tuple[FastAPI, SQLAlchemyOutbox]:
    """``POST /orders/{n}?events=k&fail=stage`` writes order ``n`` and ``k`` events, then commits (or not)."""
    app, outbox = outbox_app(engine, handlers, **outbox_options)

    def write(session: Any, n: int, events: int) -> None:
        session.execute(orders.insert().values(id=n))
        for i in range(events):
            dispatch("order.placed", {"order_id": n, "i": i}, session=session)

    if isinstance(engine, AsyncEngine):

        @app.post("/orders/{n}")
        async def place_async(n: int, events: int = 1, end: str = "commit") -> dict[str, int]:
            async with AsyncSession(engine) as session:
                await session.execute(orders.insert().values(id=n))
                for i in range(events):
                    dispatch("order.placed", {"order_id": n, "i": i}, session=session)
                if end == "commit":
                    await session.commit()
                elif end == "rollback":
                    await session.rollback()
                elif end == "raise":
                    raise RuntimeError("failed before commit")
            return {"order": n}

    else:

        @app.post("/orders/{n}")
        def place_sync(n: int, events: int = 1, end: str = "commit") -> dict[str, int]:
            with Session(engine) as session:
                write(session, n, events)
                if end == "commit":
                    session.commit()
                elif end == "rollback":
                    session.rollback()
                elif end == "raise":
                    raise RuntimeError("failed before commit")
            return {"order": n}

    return app, outbox


def create_orders(engine: sa.Engine) -> None:
    metadata.create_all(engine)


def count_rows(engine: sa.Engine, table: str = "fastapi_events_outbox", where: str = "") -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table} {where}")).scalar_one())


__all__ = ["Database", "Recorder", "count_rows", "create_orders", "make_app", "orders", "outbox_app"]
