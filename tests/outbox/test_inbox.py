"""``Inbox`` and event identity end to end: outbox -> Redis Streams -> consumer; a redelivery applies once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from fastapi_events import EventMeta, event_meta
from fastapi_events.consumer import Consumer, source_from_url
from fastapi_events.handlers.local import Depends, LocalHandler
from fastapi_events.handlers.redis import RedisStreamForwardHandler
from fastapi_events.outbox import Inbox
from tests._servers import RedisServer, wait_for
from tests.outbox._app import Database, count_rows, create_orders, make_app


@pytest.mark.anyio
async def test_a_claim_commits_with_the_handlers_changes_and_only_once(database: Database) -> None:
    inbox = Inbox()
    effects = sa.Table("effects", inbox.table.metadata, sa.Column("event_id", sa.String(64)))
    check = database.sync_engine()
    inbox.table.metadata.create_all(check)
    engine = database.engine()

    async def apply(event_id: str, commit: bool = True) -> bool:
        if database.is_async:
            assert not isinstance(engine, sa.Engine)
            async with AsyncSession(engine) as session:
                first = await inbox.claim_async(session, event_id, "billing")
                if first:
                    await session.execute(effects.insert().values(event_id=event_id))
                if commit:
                    await session.commit()
            return first

        def work() -> bool:
            assert isinstance(engine, sa.Engine)
            with Session(engine) as session:
                first = inbox.claim(session, event_id, "billing")
                if first:
                    session.execute(effects.insert().values(event_id=event_id))
                if commit:
                    session.commit()
            return first

        return await asyncio.to_thread(work)

    assert await apply("e1", commit=False)  # the handler failed before its commit: nothing recorded
    assert await apply("e1")  # so the redelivery applies it
    assert not await apply("e1")  # and any later one is skipped
    assert await apply("e2")
    with Session(check) as session:  # another handler has its own record of the same event
        assert inbox.claim(session, "e1", "shipping")
    assert count_rows(check, "effects") == 2
    if isinstance(engine, sa.Engine):
        engine.dispose()
    else:
        await engine.dispose()


def test_outbox_event_ids_reach_consumers_and_the_inbox_absorbs_redeliveries(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    stream = f"inbox-{uuid.uuid4().hex[:8]}"
    app_db = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    create_orders(app_db)
    app, _ = make_app(app_db, [RedisStreamForwardHandler(stream, redis_server.url)])

    inbox = Inbox()
    invoices = sa.Table("invoices", inbox.table.metadata, sa.Column("order_id", sa.Integer))
    consumer_url = f"sqlite+aiosqlite:///{tmp_path / 'billing.db'}"
    inbox.table.metadata.create_all(sa.create_engine(consumer_url.replace("+aiosqlite", "")))
    billing = create_async_engine(consumer_url)
    handler = LocalHandler()
    seen: list[EventMeta] = []

    @handler.register(event_name="order.placed")
    async def bill(event: Any, meta: EventMeta = Depends(event_meta)) -> None:
        seen.append(meta)
        async with AsyncSession(billing) as session:
            if not await inbox.claim_async(session, meta, "billing"):
                return  # applied before: a redelivery
            await session.execute(invoices.insert().values(order_id=event[1]["order_id"]))
            await session.commit()

    with TestClient(app) as client:
        for n in range(1, 4):
            client.post(f"/orders/{n}")
    assert count_rows(app_db) == 0
    with app_db.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one() == 3

    # A broker duplicate of the first message (same fields, so the same event id).
    client_ = redis.Redis.from_url(redis_server.url)
    first_id, fields = client_.xrange(stream)[0]
    client_.xadd(stream, fields)

    async def consume() -> None:
        base = redis_server.url.rsplit("/", 1)[0]
        consumer = Consumer(source_from_url(f"{base}/0/{stream}?group=billing"), handler)
        task = asyncio.create_task(consumer.run())
        await asyncio.to_thread(wait_for, lambda: len(seen) == 4, 30)
        consumer.stop()
        await task
        await billing.dispose()

    asyncio.run(consume())
    ids = [meta.id for meta in seen]
    assert len(set(ids)) == 3
    assert ids.count(fields[b"event_id"].decode()) == 2
    assert all(meta.name == "order.placed" and meta.attempt == 1 for meta in seen)
    with sa.create_engine(consumer_url.replace("+aiosqlite", "")).connect() as conn:
        assert sorted(conn.execute(sa.text("SELECT order_id FROM invoices")).scalars()) == [1, 2, 3]
    assert first_id
