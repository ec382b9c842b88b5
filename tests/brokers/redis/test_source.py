"""Redis Streams consumer against a real redis-server: groups, XACK after success, dead-letter stream, XAUTOCLAIM."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from fastapi import Depends

from fastapi_events.codec import encode_event
from fastapi_events.consumer import Consumer, source_from_url
from fastapi_events.delivery import RetryPolicy
from fastapi_events.handlers.local import LocalHandler
from tests._servers import until

pytestmark = [pytest.mark.anyio, pytest.mark.servers]

FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05)


def consumer_url(server: Any, stream: str, **query: str) -> str:
    base = server.url.rsplit("/", 1)[0]
    params = "&".join(f"{k}={v}" for k, v in {"group": "workers", **query}.items())
    return f"{base}/0/{stream}?{params}"


async def test_handles_events_and_acks_dead_letters_failures_and_malformed(redis_server: Any) -> None:
    stream = f"events-{uuid.uuid4().hex[:8]}"
    client = aioredis.from_url(redis_server.url)
    handler = LocalHandler()
    seen: list[Any] = []

    def prefix() -> str:
        return "handled"

    @handler.register(event_name="order.*")
    async def on_order(event: tuple[str, Any], tag: str = Depends(prefix)) -> None:
        if event[1]["id"] == 13:
            raise RuntimeError("unlucky order")
        seen.append((tag, event[1]["id"]))

    @handler.register(event_name="user.created")
    def on_user(event: tuple[str, Any]) -> None:
        seen.append(("sync", event[1]["name"]))

    for n in range(20):
        await client.xadd(stream, {"body": encode_event(("order.created", {"id": n})), "event_name": "order.created"})
    await client.xadd(stream, {"body": encode_event(("user.created", {"name": "ada"}))})
    await client.xadd(stream, {"body": b"definitely not json"})
    await client.xadd(stream, {"something": b"else"})

    consumer = Consumer(source_from_url(consumer_url(redis_server, stream)), handler, retry=FAST_RETRY)
    task = asyncio.create_task(consumer.run())

    async def all_done() -> bool:
        return bool(await client.xlen(f"{stream}.dlq") == 3 and len(seen) == 20)

    try:
        await until(all_done)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)

    assert sorted(seen, key=str) == sorted([("handled", n) for n in range(20) if n != 13] + [("sync", "ada")], key=str)
    pending = await client.xpending(stream, "workers")
    assert pending["pending"] == 0  # everything acknowledged, dead letters included
    dead = await client.xrange(f"{stream}.dlq")
    reasons = {fields[b"dead_letter_reason"].decode(): fields for _, fields in dead}
    failed = next(fields for reason, fields in reasons.items() if "unlucky order" in reason)
    assert failed[b"event_name"] == b"order.created"
    assert failed[b"body"] == encode_event(("order.created", {"id": 13}))
    assert failed[b"dead_letter_attempts"] == b"3"
    assert failed[b"dead_letter_source"] == stream.encode()
    assert any("not JSON" in reason for reason in reasons)
    assert any("body is empty" in reason for reason in reasons)
    assert consumer.stats.handled == 20
    await client.aclose()


async def test_pending_messages_of_a_dead_consumer_are_claimed(redis_server: Any) -> None:
    stream = f"events-{uuid.uuid4().hex[:8]}"
    client = aioredis.from_url(redis_server.url)
    await client.xgroup_create(stream, "workers", id="0", mkstream=True)
    for n in range(5):
        await client.xadd(stream, {"body": encode_event(("e", {"n": n}))})
    # A consumer that read everything and then died without acknowledging.
    read = await client.xreadgroup("workers", "dead-consumer", {stream: ">"}, count=10)
    assert len(read[0][1]) == 5

    handler = LocalHandler()
    seen: list[int] = []
    handler.register(lambda event: seen.append(event[1]["n"]), event_name="e")
    consumer = Consumer(source_from_url(consumer_url(redis_server, stream, claim_idle="0.3")), handler)
    task = asyncio.create_task(consumer.run())

    async def claimed() -> bool:
        return len(seen) == 5

    try:
        await until(claimed)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)
    assert sorted(seen) == list(range(5))
    assert (await client.xpending(stream, "workers"))["pending"] == 0
    await client.aclose()


async def test_two_consumers_in_a_group_share_the_stream(redis_server: Any) -> None:
    stream = f"events-{uuid.uuid4().hex[:8]}"
    client = aioredis.from_url(redis_server.url)
    seen: list[tuple[int, int]] = []
    consumers = []
    for index in range(2):
        handler = LocalHandler()

        async def record(event: tuple[str, Any], index: int = index) -> None:
            await asyncio.sleep(0.001)
            seen.append((index, event[1]["n"]))

        handler.register(record, event_name="*")
        consumers.append(Consumer(source_from_url(consumer_url(redis_server, stream)), handler))
    tasks = [asyncio.create_task(c.run()) for c in consumers]
    for n in range(300):
        await client.xadd(stream, {"body": encode_event(("e", {"n": n}))})

    async def done() -> bool:
        return len(seen) >= 300

    try:
        await until(done)
    finally:
        for c in consumers:
            c.stop()
        await asyncio.gather(*tasks)
    assert sorted(n for _, n in seen) == list(range(300))  # each exactly once when nobody crashes
    assert {index for index, _ in seen} == {0, 1}
    await client.aclose()


async def test_a_slow_handler_keeps_its_message_from_being_claimed(redis_server: Any) -> None:
    stream = f"events-{uuid.uuid4().hex[:8]}"
    client = aioredis.from_url(redis_server.url)
    await client.xadd(stream, {"body": encode_event(("slow", {}))})
    handled: list[str] = []
    started = asyncio.Event()

    slow_handler = LocalHandler()

    @slow_handler.register(event_name="slow")
    async def slow(event: tuple[str, Any]) -> None:
        started.set()
        await asyncio.sleep(2.5)  # several claim_idle periods, with the only slot busy
        handled.append("a")

    other_handler = LocalHandler()
    other_handler.register(lambda event: handled.append("b"), event_name="slow")
    url = consumer_url(redis_server, stream, claim_idle="0.6")
    first = Consumer(source_from_url(url), slow_handler, concurrency=1)
    first_task = asyncio.create_task(first.run())
    await asyncio.wait_for(started.wait(), 10)
    second = Consumer(source_from_url(url), other_handler)
    second_task = asyncio.create_task(second.run())

    async def finished() -> bool:
        return bool(handled)

    try:
        await until(finished)
        await asyncio.sleep(1.0)
    finally:
        first.stop()
        second.stop()
        await asyncio.gather(first_task, second_task)
    assert handled == ["a"]  # the other consumer never stole it
    assert (await client.xpending(stream, "workers"))["pending"] == 0
    await client.aclose()
