"""One way to run a unit of work against a sync ``Engine`` or an ``AsyncEngine`` without blocking the loop.

Every statement of the outbox is written once, as a function of a sync ``Connection``: with an ``AsyncEngine``
it runs through ``AsyncConnection.run_sync`` (the driver is async: no thread), with a sync ``Engine`` in a
worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from .._threads import run_sync

T = TypeVar("T")


class Database:
    def __init__(self, engine: sa.Engine | AsyncEngine) -> None:
        if not isinstance(engine, (sa.Engine, AsyncEngine)):
            raise TypeError(f"SQLAlchemyOutbox needs a SQLAlchemy Engine or AsyncEngine, not {type(engine).__name__}")
        self.engine = engine
        self.sync_engine: sa.Engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        self.dialect: str = self.sync_engine.dialect.name
        self.is_postgres = self.dialect == "postgresql"

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(connection, *args)`` in one transaction, committed when it returns."""
        engine = self.engine
        if isinstance(engine, AsyncEngine):
            async with engine.begin() as conn:
                return await conn.run_sync(work, *args)
        return await run_sync(self.run_blocking, work, *args)

    def run_blocking(self, work: Callable[..., T], *args: Any) -> T:
        with self.sync_engine.begin() as conn:
            return work(conn, *args)


__all__ = ["Database"]
