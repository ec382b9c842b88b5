"""RedisStreamForwardHandler against a real redis-server: XADD per event, trimming, outage with a spool."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from fastapi_events.codec import decode_event
from fastapi_events.handlers.redis import RedisStreamForwardHandler

pytestmark = [pytest.mark.anyio, pytest.mark.servers]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_events_become_stream_entries_with_attributes(redis_server: Any) -> None:
    stream = f"events-{uuid.uuid4().hex[:8]}"
    forwarder = RedisStreamForwardHandler(stream, redis_server.url, key=lambda event: f"user-{event[1]['u']}")
    await forwarder.startup()
    for n in range(250):
        await forwarder.handle_many([("user.updated", {"u": n % 3, "n": n})])
    await forwarder.flush(30)
    assert forwarder.stats.delivered == 250
    await forwarder.shutdown()

    client = aioredis.from_url(redis_server.url)
    entries = await client.xrange(stream)
    await client.aclose()
    assert len(entries) == 250  # counted by a real reader: nothing lost, nothing doubled
    payloads = [decode_event(fields[b"body"])[1] for _, fields in entries]
    assert [p["n"] for p in payloads] == list(range(250))  # one producer: stream order = dispatch order
    _, first = entries[0]
    assert first[b"event_name"] == b"user.updated"
    assert len(first[b"event_id"]) == 32
    assert first[b"key"] == b"user-0"


async def test_maxlen_trims_approximately(redis_server: Any) -> None:
    stream = f"capped-{uuid.uuid4().hex[:8]}"
    forwarder = RedisStreamForwardHandler(stream, redis_server.url, maxlen=100)
    await forwarder.startup()
    await forwarder.handle_many([("tick", n) for n in range(2000)])
    await forwarder.flush(30)
    await forwarder.shutdown()
    client = aioredis.from_url(redis_server.url)
    length = await client.xlen(stream)
    last = await client.xrevrange(stream, count=1)
    await client.aclose()
    assert 100 <= length < 400  # "~": whole nodes are trimmed, never below maxlen
    assert decode_event(last[0][1][b"body"]) == ("tick", 1999)


async def test_events_survive_a_redis_outage_in_the_spool(fresh_redis_server: Any, tmp_path: Path) -> None:
    server = fresh_redis_server(appendonly=True)
    stream = "outage"
    forwarder = RedisStreamForwardHandler(stream, server.url, spool_path=tmp_path / "spool.db")
    await forwarder.startup()
    await forwarder.handle_many([("before", 0)])
    await forwarder.flush(10)
    server.kill()
    await forwarder.handle_many([("during", n) for n in range(50)])
    await forwarder.flush(1)
    assert forwarder.stats.queued == 50
    server.restart()
    await forwarder.flush(30)
    stats = forwarder.stats
    await forwarder.shutdown()
    assert stats.queued == 0
    assert stats.dead_lettered == 0
    client = aioredis.from_url(server.url)
    entries = await client.xrange(stream)
    await client.aclose()
    names = [decode_event(fields[b"body"]) for _, fields in entries]
    assert names[0] == ("before", 0)
    assert sorted(n for name, n in names[1:]) == list(range(50))


async def test_wrong_key_type_is_a_permanent_failure(redis_server: Any) -> None:
    key = f"not-a-stream-{uuid.uuid4().hex[:8]}"
    client = aioredis.from_url(redis_server.url)
    await client.set(key, "plain string")
    await client.aclose()
    dead: list[str] = []
    forwarder = RedisStreamForwardHandler(key, redis_server.url, on_dead_letter=lambda m, reason: dead.append(reason))
    await forwarder.startup()
    await forwarder.handle_many([("e", 1)])
    await forwarder.flush(10)
    await forwarder.shutdown()
    assert len(dead) == 1
    assert "WRONGTYPE" in dead[0]


async def test_bodies_arrive_byte_for_byte_whether_text_or_binary(redis_server: Any) -> None:
    # Text bodies travel in one JSON argument per batch, decoded by the server; anything else one argument per
    # field. Either way the stream holds exactly the bytes the serializer made.
    stream = f"bytes-{uuid.uuid4().hex[:8]}"
    bodies = {
        "escapes": 'é😀 \x00\n\t"quoted" \\ \x7f \u2028'.encode(),
        "json": '["e",{"x":"\\u0000 \\"q\\" é"}]'.encode(),
        "binary": b"\xff\xfe\x00 not utf-8",
    }
    forwarder = RedisStreamForwardHandler(stream, redis_server.url, serializer=lambda event: bodies[event[0]])
    await forwarder.startup()
    await forwarder.handle_many([("escapes", 1), ("json", 2)])  # one batch of text
    await forwarder.handle_many([("binary", 3), ("escapes", 4)])  # a batch with a binary body
    await forwarder.flush(30)
    await forwarder.shutdown()
    client = aioredis.from_url(redis_server.url)
    entries = await client.xrange(stream)
    await client.aclose()
    got = [(fields[b"event_name"].decode(), fields[b"body"]) for _, fields in entries]
    assert got == [(name, bodies[name]) for name in ("escapes", "json", "binary", "escapes")]
    assert all(list(fields)[-1] == b"body" for _, fields in entries)  # attributes first, body last, either way
