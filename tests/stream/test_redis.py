"""Fan-out across processes through a real redis-server: every process' events, once each, in stream order."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from fastapi_events.stream import EventStream
from tests._app_process import AppProcesses
from tests._servers import free_port
from tests.stream._sse_client import SSEReader, until, until_async
from tests.stream.test_sse import post

pytestmark = pytest.mark.anyio


def stream_url(server: Any) -> str:
    return f"{server.url}/live-{uuid.uuid4().hex[:8]}"


async def stream_ids(url: str) -> list[str]:
    base, key = url.rsplit("/", 1)
    client = aioredis.from_url(base)
    try:
        return [entry_id.decode() for entry_id, _ in await client.xrange(key)]
    finally:
        await client.aclose()


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[AppProcesses]:
    processes = AppProcesses("tests.stream.apps:make_app", tmp_path)
    yield processes
    processes.close()


async def test_in_process_subscription_gets_redis_entry_ids(redis_server: Any) -> None:
    url = stream_url(redis_server)
    stream = EventStream(url=url)
    await stream.startup()
    try:
        async with stream.subscribe("order.*") as subscription:
            await stream.handle_many([("order.placed", {"id": 1}), ("user.x", 0), ("order.paid", {"id": 1})])
            got = [await anext(subscription), await anext(subscription)]
        assert [(e.name, e.payload) for e in got] == [("order.placed", {"id": 1}), ("order.paid", {"id": 1})]
        ids = await stream_ids(url)
        assert [e.id for e in got] == [ids[0], ids[2]]
    finally:
        await stream.shutdown()


async def test_a_subscriber_on_one_process_sees_every_process_events_once_in_stream_order(
    redis_server: Any, apps: AppProcesses
) -> None:
    url = stream_url(redis_server)
    _, first = apps.start({"STREAM_URL": url})
    _, second = apps.start({"STREAM_URL": url})
    async with SSEReader(f"{first}/events") as on_first, SSEReader(f"{second}/events") as on_second:
        await asyncio.gather(
            *(post(first, "a", *range(n * 10, n * 10 + 10)) for n in range(5)),
            *(post(second, "b", *range(n * 10, n * 10 + 10)) for n in range(5)),
        )
        got_first = await on_first.wait_messages(100)
        got_second = await on_second.wait_messages(100)
    ids = await stream_ids(url)
    assert len(ids) == 100
    assert [m.id for m in got_first] == ids
    assert [m.id for m in got_second] == ids
    assert sorted((m.event, m.payload) for m in got_first) == sorted(
        [("a", n) for n in range(50)] + [("b", n) for n in range(50)]
    )


async def test_resume_on_another_process_and_after_a_restart(redis_server: Any, apps: AppProcesses) -> None:
    url = stream_url(redis_server)
    first_proc, first = apps.start({"STREAM_URL": url})
    _, second = apps.start({"STREAM_URL": url})
    async with SSEReader(f"{first}/events") as reader:
        await post(first, "n", *range(5))
        seen = await reader.wait_messages(5)
    await post(second, "n", *range(5, 10))  # while nobody listens
    async with SSEReader(f"{second}/events", {"Last-Event-ID": seen[-1].id or ""}) as resumed:
        rest = await resumed.wait_messages(5)
    assert [m.payload for m in seen + rest] == list(range(10))
    os.killpg(first_proc.pid, signal.SIGKILL)
    first_proc.wait(10)
    _, restarted = apps.start({"STREAM_URL": url})
    async with SSEReader(f"{restarted}/events", {"Last-Event-ID": rest[1].id or ""}) as after_restart:
        await post(restarted, "n", 10)
        tail = await after_restart.wait_messages(4)
    assert [m.payload for m in tail] == [7, 8, 9, 10]
    assert [m.id for m in seen + rest] == (await stream_ids(url))[:10]


async def test_gap_when_the_id_was_trimmed_from_the_stream(redis_server: Any, apps: AppProcesses) -> None:
    url = stream_url(redis_server)
    _, first = apps.start({"STREAM_URL": url, "STREAM_HISTORY": "5"})
    await post(first, "n", *range(20))
    ids: list[str] = []

    async def all_written() -> bool:
        ids[:] = await stream_ids(url)  # the handler XADDs after the response was sent
        return len(ids) == 20

    await until_async(all_written)
    _, fresh = apps.start({"STREAM_URL": url, "STREAM_HISTORY": "5"})  # loads its history from the stream
    async with SSEReader(f"{fresh}/events", {"Last-Event-ID": ids[1]}) as reader:
        got = await reader.wait_messages(6)
    assert (got[0].event, got[0].id) == ("gap", None)
    assert got[0].payload == {"last_event_id": ids[1], "first_id": ids[-5]}
    assert [m.payload for m in got[1:]] == [15, 16, 17, 18, 19]


async def test_redis_restart_reader_reconnects_and_events_flow_again(fresh_redis_server: Any) -> None:
    server = fresh_redis_server(appendonly=True)
    stream = EventStream(url=f"{server.url}/live")
    await stream.startup()
    try:
        async with stream.subscribe() as subscription:
            await stream.handle_many([("before", n) for n in range(3)])
            await until(lambda: len(subscription.pending) == 3, 10, "events before the restart")
            await asyncio.to_thread(server.restart)
            await stream.handle_many([("after", n) for n in range(3)])
            await until(lambda: len(subscription.pending) >= 6, 20, "events after the restart")
            names = [(e.name, e.payload) for e in subscription.take()]
        assert names[:3] == [("before", 0), ("before", 1), ("before", 2)]
        assert names[-3:] == [("after", 0), ("after", 1), ("after", 2)]
    finally:
        await stream.shutdown()


async def test_without_redis_subscribers_get_503_and_events_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    stream = EventStream(url=f"redis://127.0.0.1:{free_port()}/0/live")
    transport = httpx.ASGITransport(app=stream.app, client=("127.0.0.1", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.get("/")
    assert response.status_code == 503
    assert "event stream unavailable: ConnectionError" in response.text
    with caplog.at_level(logging.ERROR, logger="fastapi_events"):
        await stream.handle_many([("order.placed", {"id": 1})])
    failure = next(r for r in caplog.records if r.name == "fastapi_events")
    assert "'order.placed'" in failure.getMessage()
    assert "EventStream" in failure.getMessage()
