"""Kafka consumer against a real Kafka-protocol broker (tansu): commits, dead-letter topic, per-key order."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Producer, TopicPartition
from confluent_kafka import Consumer as RawConsumer
from fastapi import Depends

from fastapi_events.consumer import Consumer, source_from_url
from fastapi_events.delivery import RetryPolicy
from fastapi_events.handlers.kafka import KafkaForwardHandler
from fastapi_events.handlers.local import LocalHandler
from tests._servers import until

pytestmark = [pytest.mark.anyio, pytest.mark.servers]

FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05)
FAST_GROUP = "session.timeout.ms=6000&heartbeat.interval.ms=500"


def url(broker: Any, topic: str, group: str) -> str:
    return f"kafka://{broker.bootstrap_servers}/{topic}?group={group}&{FAST_GROUP}"


def read_topic(broker: Any, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
    reader = RawConsumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    # Assigned, not subscribed: no group join to wait for.
    partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
    reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < expected and time.monotonic() < deadline:
        out.extend(m for m in reader.consume(100, 0.5) if m.error() is None)
    reader.close()
    return out


async def forward(broker: Any, topic: str, events: list[tuple[str, Any]], key: Any = None) -> None:
    forwarder = KafkaForwardHandler(topic, broker.bootstrap_servers, key=key)
    await forwarder.startup()
    await forwarder.handle_many(events)
    await forwarder.flush(30)
    assert forwarder.stats.delivered == len(events)
    await forwarder.shutdown()


async def test_forwarded_events_are_handled_failures_and_garbage_dead_lettered(kafka_broker: Any) -> None:
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    handler = LocalHandler()
    seen: list[Any] = []

    def currency() -> str:
        return "EUR"

    @handler.register(event_name="order.*")
    async def on_order(event: tuple[str, Any], cur: str = Depends(currency)) -> None:
        if event[1]["n"] == 7:
            raise RuntimeError("payment service said no")
        seen.append((event[1]["n"], cur))

    @handler.register(event_name="ping")
    def on_ping(event: tuple[str, Any]) -> None:
        seen.append("ping")

    await forward(kafka_broker, topic, [("order.created", {"n": n}) for n in range(30)] + [("ping", None)])
    raw = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
    raw.produce(topic, value=b"<xml>not our format</xml>", headers=[("source", b"legacy")])
    raw.flush(10)

    consumer = Consumer(source_from_url(url(kafka_broker, topic, "g1")), handler, retry=FAST_RETRY)
    task = asyncio.create_task(consumer.run())
    try:
        await until(lambda: len(seen) == 30 and consumer.stats.dead_lettered == 2)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 30)
    assert sorted(map(str, seen)) == sorted(map(str, [(n, "EUR") for n in range(30) if n != 7] + ["ping"]))

    dead = read_topic(kafka_broker, f"{topic}.dlq", 2)
    by_reason = {dict(m.headers())["dead_letter_reason"].decode(): m for m in dead}
    failed = next(m for reason, m in by_reason.items() if "payment service said no" in reason)
    headers = dict(failed.headers())
    assert headers["event_name"] == b"order.created"
    assert headers["dead_letter_attempts"] == b"3"
    assert headers["dead_letter_source"] == topic.encode()
    assert b'"n":7' in failed.value()
    garbage = next(m for reason, m in by_reason.items() if "not JSON" in reason)
    assert garbage.value() == b"<xml>not our format</xml>"
    assert dict(garbage.headers())["source"] == b"legacy"

    # Everything was committed: the same group starts after the last message.
    again: list[Any] = []
    handler2 = LocalHandler()
    handler2.register(lambda event: again.append(event), event_name="*")
    consumer2 = Consumer(source_from_url(url(kafka_broker, topic, "g1")), handler2)
    task2 = asyncio.create_task(consumer2.run())
    await asyncio.sleep(6)
    consumer2.stop()
    await asyncio.wait_for(task2, 30)
    assert again == []


async def test_per_key_order_is_kept_with_concurrency(kafka_broker: Any) -> None:
    topic = f"keyed-{uuid.uuid4().hex[:8]}"
    events = [("step", {"key": f"k{n % 5}", "n": n}) for n in range(200)]
    await forward(kafka_broker, topic, events, key=lambda event: event[1]["key"])
    handler = LocalHandler()
    order: dict[str, list[int]] = {}

    @handler.register(event_name="step")
    async def step(event: tuple[str, Any]) -> None:
        await asyncio.sleep(random.random() / 500)  # finish out of order unless serialised per key
        order.setdefault(event[1]["key"], []).append(event[1]["n"])

    consumer = Consumer(source_from_url(url(kafka_broker, topic, "g")), handler, concurrency=8)
    task = asyncio.create_task(consumer.run())
    try:
        await until(lambda: sum(map(len, order.values())) == 200)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 30)
    assert set(order) == {f"k{i}" for i in range(5)}
    for values in order.values():
        assert values == sorted(values)


async def test_unfinished_message_is_not_committed_and_comes_back(kafka_broker: Any) -> None:
    topic = f"stuck-{uuid.uuid4().hex[:8]}"
    await forward(kafka_broker, topic, [("e", {"n": n}) for n in range(10)], key=lambda event: "same")
    handler = LocalHandler()
    seen: list[int] = []
    hang = True

    @handler.register(event_name="e")
    async def on_e(event: tuple[str, Any]) -> None:
        if event[1]["n"] == 4 and hang:
            await asyncio.sleep(3600)
        seen.append(event[1]["n"])

    consumer = Consumer(source_from_url(url(kafka_broker, topic, "g")), handler, shutdown_timeout=0.5)
    task = asyncio.create_task(consumer.run())
    try:
        await until(lambda: seen == [0, 1, 2, 3])
        await asyncio.sleep(0.5)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 30)
    assert seen == [0, 1, 2, 3]  # one key: 5..9 wait behind the stuck 4

    hang = False
    seen.clear()
    consumer = Consumer(source_from_url(url(kafka_broker, topic, "g")), handler)
    task = asyncio.create_task(consumer.run())
    try:
        await until(lambda: len(seen) == 6)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 30)
    assert seen == [4, 5, 6, 7, 8, 9]  # resumes at the first unfinished offset, nothing handled twice


async def test_slow_handlers_do_not_get_the_consumer_expelled(kafka_broker: Any) -> None:
    topic = f"slow-{uuid.uuid4().hex[:8]}"
    await forward(kafka_broker, topic, [("e", {"n": n}) for n in range(3)], key=lambda event: "k")
    handler = LocalHandler()
    seen: list[int] = []

    @handler.register(event_name="e")
    async def slow(event: tuple[str, Any]) -> None:
        await asyncio.sleep(4 if event[1]["n"] == 0 else 0)
        seen.append(event[1]["n"])

    # Far longer than the poll interval allows, with every slot busy: only idle() polls keep us in the group.
    strict = url(kafka_broker, topic, "g") + "&max.poll.interval.ms=2000&session.timeout.ms=2000"
    strict = strict.replace("session.timeout.ms=6000&", "")
    consumer = Consumer(source_from_url(strict), handler, concurrency=1, prefetch=1)
    task = asyncio.create_task(consumer.run())
    try:
        await until(lambda: len(seen) == 3)
        await asyncio.sleep(1)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 30)
    assert seen == [0, 1, 2]  # nothing handled twice after an expulsion

    again: list[Any] = []
    handler2 = LocalHandler()
    handler2.register(lambda event: again.append(event), event_name="*")
    consumer2 = Consumer(source_from_url(url(kafka_broker, topic, "g")), handler2)
    task2 = asyncio.create_task(consumer2.run())
    await asyncio.sleep(6)
    consumer2.stop()
    await asyncio.wait_for(task2, 30)
    assert again == []  # and all of it was committed
