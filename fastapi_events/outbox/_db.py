"""One way to run a unit of work against a sync ``Engine`` or an ``AsyncEngine`` without blocking the loop.

Every statement of the outbox is written once, as a function of a sync ``Connection``: with an ``AsyncEngine``
it runs through ``AsyncConnection.run_sync`` (the driver is async: no thread), with a sync ``Engine`` in one
of the outbox's own threads (as many as the engine's default pool has connections).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..concurrency import BlockingExecutor

T = TypeVar("T")


class Database:
    def __init__(self, engine: sa.Engine | AsyncEngine) -> None:
        if not isinstance(engine, (sa.Engine, AsyncEngine)):
            raise TypeError(f"SQLAlchemyOutbox needs a SQLAlchemy Engine or AsyncEngine, not {type(engine).__name__}")
        self.engine = engine
        self.sync_engine: sa.Engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        self.dialect: str = self.sync_engine.dialect.name
        self.is_postgres = self.dialect == "postgresql"
        self._threads = BlockingExecutor("outbox", workers=4)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(connection, *args)`` in one transaction, committed when it returns."""
        engine = self.engine
        if isinstance(engine, AsyncEngine):
            async with engine.begin() as conn:
                return await conn.run_sync(work, *args)
        return await self._threads.run(self.run_blocking, work, *args)

    def close(self) -> None:
        self._threads.shutdown()

    def run_blocking(self, work: Callable[..., T], *args: Any) -> T:
        with self.sync_engine.begin() as conn:
            return work(conn, *args)


_SYNC_DRIVERS = {"asyncpg": "psycopg", "psycopg_async": "psycopg", "aiosqlite": "pysqlite"}
_ASYNC_DRIVERS = {"asyncpg", "psycopg_async", "aiosqlite", "aiomysql", "asyncmy"}


def make_engine(url: str, *, sync: bool = False) -> sa.Engine | AsyncEngine:
    """An engine for a URL given on the command line: async when its driver is, or a sync one on request.

    A bare ``postgresql://`` URL means psycopg 3, which the ``outbox`` extra installs.
    """
    parsed = sa.make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    driver = parsed.get_driver_name()
    if sync and driver in _SYNC_DRIVERS:
        parsed = parsed.set(drivername=f"{parsed.get_backend_name()}+{_SYNC_DRIVERS[driver]}")
    elif not sync and driver in _ASYNC_DRIVERS:
        from sqlalchemy.ext.asyncio import create_async_engine

        return create_async_engine(parsed, pool_pre_ping=True)
    return sa.create_engine(parsed, pool_pre_ping=True)


__all__ = ["Database", "make_engine"]
