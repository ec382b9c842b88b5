"""Real redis-server behind a forwarder with a small queue, overloaded through uvicorn for several seconds: the
requests wait for room and every event is in the stream; during an outage without spool, the events given up are
exactly the ones missing from the stream."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable

import pytest
import redis

from fastapi_events.delivery import OutboundMessage
from fastapi_events.handlers.redis import RedisStreamForwardHandler
from tests._servers import RedisServer, until
from tests.delivery._app import make_app
from tests.delivery._load import EVENTS_PER_REQUEST, LIMIT_CONCURRENCY, Sampler, drive
from tests.stream.apps import ThreadServer

MAX_QUEUE = 20  # below what 20 clients dispatch at once: the queue is full most of the time
LOAD_SECONDS = 4.0


def _stream_numbers(url: str, stream: str) -> list[int]:
    reader = redis.Redis.from_url(url)
    try:
        return [json.loads(fields[b"body"])[1] for _, fields in reader.xrange(stream)]
    finally:
        reader.close()


@pytest.mark.anyio
async def test_overloaded_forwarder_pushes_back_and_every_event_reaches_the_stream(redis_server: RedisServer) -> None:
    stream = f"load-{uuid.uuid4().hex[:8]}"
    handler = RedisStreamForwardHandler(stream, redis_server.url, max_queue_size=MAX_QUEUE)
    with ThreadServer(make_app(handler), limit_concurrency=LIMIT_CONCURRENCY) as server, Sampler(handler) as peaks:
        sent = await drive(server.url, LOAD_SECONDS)
        await until(lambda: handler.stats.queued == 0, 60, "the forwarder to deliver everything")
    numbers = _stream_numbers(redis_server.url, stream)
    assert len(numbers) == len(sent)
    assert sorted(numbers) == sorted(sent)
    assert (handler.stats.dropped, handler.stats.dead_lettered) == (0, 0)
    assert peaks.waiting > 0, "the load never filled the queue: nothing was tested"
    assert peaks.queued <= MAX_QUEUE
    assert peaks.held <= MAX_QUEUE + LIMIT_CONCURRENCY * EVENTS_PER_REQUEST


@pytest.mark.anyio
async def test_redis_killed_under_load_without_spool_reports_exactly_the_missing_events(
    fresh_redis_server: Callable[..., RedisServer],
) -> None:
    server_redis = fresh_redis_server(appendonly=True)
    stream = f"load-{uuid.uuid4().hex[:8]}"
    reported: list[OutboundMessage] = []
    handler = RedisStreamForwardHandler(
        stream,
        server_redis.url,
        max_queue_size=MAX_QUEUE,
        reconnect_max_delay=0.3,
        on_dead_letter=lambda message, _reason: reported.append(message),
    )

    async def outage_in_the_middle() -> None:
        await asyncio.sleep(LOAD_SECONDS / 4)
        await asyncio.to_thread(server_redis.kill)
        await asyncio.sleep(LOAD_SECONDS / 2)
        await asyncio.to_thread(server_redis.start)

    with ThreadServer(make_app(handler), limit_concurrency=LIMIT_CONCURRENCY) as server:
        sent, _ = await asyncio.gather(drive(server.url, LOAD_SECONDS), outage_in_the_middle())
        await until(lambda: handler.stats.queued == 0, 60, "the forwarder to deliver what it kept")
    numbers = _stream_numbers(server_redis.url, stream)
    missing = set(sent) - set(numbers)
    assert missing, "the outage dropped nothing: the queue never filled"
    assert handler.stats.dropped == len(missing)
    assert {json.loads(m.body)[1] for m in reported} == missing
