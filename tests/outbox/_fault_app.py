"""The app (and the handlers of standalone relays) the fault tests run in subprocesses.

Every handler records each event it handles as a row ``(event_id, handler, pid)`` in the ``deliveries`` table of
the same PostgreSQL database, after ``FE_HANDLER_DELAY`` seconds, so that tests count every event end to end.
Environment: ``FE_DB_URL`` (asyncpg URL), ``FE_LEASE``, ``FE_RELAY`` (0: write only), ``FE_HANDLER_DELAY``,
``FE_POLL`` (the relay's poll interval). ``POST /orders/{n}?delay=d&spread=s`` delays event ``i`` by ``d + i * s``
seconds (its due time is in the payload, and recorded with the delivery).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from fastapi_events import EventHandlerASGIMiddleware, EventMeta, dispatch, event_meta
from fastapi_events.handlers.local import Depends, LocalHandler
from fastapi_events.outbox import SQLAlchemyOutbox

metadata = sa.MetaData()
orders = sa.Table("orders", metadata, sa.Column("id", sa.Integer, primary_key=True))
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("handler", sa.String(32), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("order_id", sa.Integer, nullable=False),
    sa.Column("due", sa.Float, nullable=True),  # delayed events: the due time the app gave them (payload "due")
    sa.Column("handled_at", sa.Float, nullable=True),
)

_engine: AsyncEngine | None = None


def engine() -> AsyncEngine:
    global _engine
    if _engine is None:
        _engine = create_async_engine(os.environ["FE_DB_URL"], pool_size=20, max_overflow=20, pool_pre_ping=True)
    return _engine


async def _record(handler: str, event: Any, meta: EventMeta) -> None:
    delay = float(os.environ.get("FE_HANDLER_DELAY", "0"))
    if delay:
        await asyncio.sleep(delay)
    async with engine().begin() as conn:
        await conn.execute(
            deliveries.insert().values(
                event_id=meta.id,
                handler=handler,
                pid=os.getpid(),
                order_id=event[1]["order"],
                due=event[1].get("due"),
                handled_at=time.time(),
            )
        )


local = LocalHandler()


@local.register(event_name="order.*")
async def audit(event: Any, meta: EventMeta = Depends(event_meta)) -> None:
    await _record("audit", event, meta)


@local.register(event_name="order.*")
async def notify(event: Any, meta: EventMeta = Depends(event_meta)) -> None:
    await _record("notify", event, meta)


handlers = [local]


def app_from_env() -> FastAPI:
    outbox = SQLAlchemyOutbox(
        engine(),
        relay=os.environ.get("FE_RELAY", "1") == "1",
        lease=float(os.environ.get("FE_LEASE", "30")),
        poll_interval=float(os.environ.get("FE_POLL", "0.2")),
    )
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=handlers, outbox=outbox)

    @app.post("/orders/{n}")
    async def place(n: int, events: int = 1, delay: float | None = None, spread: float = 0.0) -> dict[str, int]:
        async with AsyncSession(engine()) as session:
            await session.execute(orders.insert().values(id=n))
            for i in range(events):
                if delay is None:
                    dispatch("order.placed", {"order": n, "i": i}, session=session)
                    continue
                # Taken just before the call: the event's own due time (counted from the call) is not earlier.
                wait = delay + i * spread
                due = time.time() + wait
                dispatch("order.placed", {"order": n, "i": i, "due": due}, session=session, delay=wait)
            await session.commit()
        return {"order": n}

    return app
