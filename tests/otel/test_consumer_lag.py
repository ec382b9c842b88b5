"""Consumer lag gauge fed by the real brokers: a backlog shows while handlers are stuck, and drains to 0."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from fastapi_events import _hooks
from fastapi_events.brokers.redis import RedisStreamSource
from fastapi_events.codec import encode_event
from fastapi_events.consumer import Consumer, source_from_url
from fastapi_events.handlers.kafka import KafkaForwardHandler
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.otel import _attributes as attr
from tests._servers import until

from .conftest import Telemetry

pytestmark = [pytest.mark.anyio, pytest.mark.servers, pytest.mark.timeout(60)]

EVENTS = 12


def lag_of(telemetry: Telemetry, system: str, destination: str) -> int | None:
    """Sum of the gauge over the destination's partitions; ``None`` before any report."""
    points = [
        p
        for p in telemetry.points(attr.METRIC_CONSUMER_LAG)
        if p[0][attr.MESSAGING_SYSTEM] == system and p[0][attr.MESSAGING_DESTINATION_NAME] == destination
    ]
    return sum(p[1] for p in points) if points else None


def blocking_handler(release: asyncio.Event, started: list[int]) -> LocalHandler:
    handler = LocalHandler()

    @handler.register(event_name="lag.*")
    async def stuck(event: tuple[str, Any]) -> None:
        started.append(event[1]["n"])
        await release.wait()

    return handler


async def drive(
    consumer: Consumer, release: asyncio.Event, telemetry: Telemetry, system: str, destination: str
) -> list[int]:
    """Run ``consumer`` until its lag is seen at ``EVENTS``, release the handlers, until it is 0.

    Returns the distinct lag values observed, in order.
    """
    seen: list[int] = []

    def lag_is(expected: int) -> bool:
        lag = lag_of(telemetry, system, destination)
        if lag is not None and (not seen or seen[-1] != lag):
            seen.append(lag)
        return lag == expected

    task = asyncio.create_task(consumer.run())
    try:
        await until(lambda: lag_is(EVENTS))
        await asyncio.sleep(1.2)  # another report or two: still everything, nothing finished
        assert lag_is(EVENTS)
        release.set()
        await until(lambda: lag_is(0))
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 20)
    return seen


async def test_kafka_lag_reported_per_partition_and_drains(kafka_broker: Any, telemetry: Telemetry) -> None:
    begin = time.monotonic()
    topic = f"lag-{uuid.uuid4().hex[:8]}"
    forwarder = KafkaForwardHandler(topic, kafka_broker.bootstrap_servers)
    await forwarder.startup()
    await forwarder.handle_many([("lag.e", {"n": n}) for n in range(EVENTS)])
    await forwarder.flush(30)
    assert forwarder.stats.delivered == EVENTS
    await forwarder.shutdown()

    release, started = asyncio.Event(), list[int]()
    # tansu completes a group join after about half of session.timeout.ms: keep it short.
    url = (
        f"kafka://{kafka_broker.bootstrap_servers}/{topic}?group=lag&session.timeout.ms=2000&heartbeat.interval.ms=200"
    )
    consumer = Consumer(source_from_url(url), blocking_handler(release, started), shutdown_timeout=2)
    seen = await drive(consumer, release, telemetry, "kafka", topic)
    assert sorted(started) == list(range(EVENTS))  # handled once each
    assert max(seen) == EVENTS, seen
    assert seen[-1] == 0, seen
    partitions = {p[0][attr.CONSUMER_PARTITION] for p in telemetry.points(attr.METRIC_CONSUMER_LAG)}
    assert partitions
    assert all(p.isdigit() for p in partitions)
    assert time.monotonic() - begin < 20


async def test_redis_lag_reported_and_drains(redis_server: Any, telemetry: Telemetry) -> None:
    begin = time.monotonic()
    stream = f"lag-{uuid.uuid4().hex[:8]}"
    client = aioredis.from_url(redis_server.url)
    try:
        for n in range(EVENTS):
            await client.xadd(stream, {"body": encode_event(("lag.e", {"n": n}))})
    finally:
        await client.aclose()

    release, started = asyncio.Event(), list[int]()
    base = redis_server.url.rsplit("/", 1)[0]
    # Fewer slots than entries: some are delivered and stuck, the rest not read yet; both count.
    consumer = Consumer(
        source_from_url(f"{base}/0/{stream}?group=lag"),
        blocking_handler(release, started),
        concurrency=4,
        shutdown_timeout=2,
    )
    seen = await drive(consumer, release, telemetry, "redis", stream)
    assert sorted(started) == list(range(EVENTS))
    assert max(seen) == EVENTS, seen
    assert seen[-1] == 0, seen
    assert {p[0][attr.CONSUMER_PARTITION] for p in telemetry.points(attr.METRIC_CONSUMER_LAG)} == {"0"}
    assert time.monotonic() - begin < 20


async def test_no_lag_queries_without_telemetry(redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not _hooks.on_consumer_lag
    stream = f"nolag-{uuid.uuid4().hex[:8]}"
    source = RedisStreamSource(redis_server.url, stream, group="lag", block=0.1)
    await source.open()
    try:
        queried: list[Any] = []
        original = source.client.xinfo_groups

        async def counting(*args: Any) -> Any:
            queried.append(args)
            return await original(*args)

        monkeypatch.setattr(source.client, "xinfo_groups", counting)
        await source.receive(10)
        await source.idle()
        assert queried == []  # nobody observes lag: the broker is not asked
        monkeypatch.setattr(_hooks, "on_consumer_lag", [lambda *args: None])
        await source.receive(10)
        assert len(queried) == 1
    finally:
        await source.close()


def test_kafka_asks_for_no_watermark_without_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi_events.brokers.kafka import KafkaSource

    assert not _hooks.on_consumer_lag
    asked: list[Any] = []

    class FakeConsumer:
        def get_watermark_offsets(self, tp: Any, cached: bool = False) -> tuple[int, int]:
            asked.append((tp.partition, cached))
            return 0, 10

    source = KafkaSource("127.0.0.1:1", "t")
    try:
        source._consumer = FakeConsumer()
        source._tracker.assign([0, 1])
        source._tracker.received(0, 3)  # partition 1 handed out nothing: its position is unknown
        source._report_lag()
        assert asked == []
        got: list[tuple[str, str, str, int]] = []
        monkeypatch.setattr(_hooks, "on_consumer_lag", [lambda *args: got.append(args)])
        source._report_lag()
        source._report_lag()  # within LAG_INTERVAL: skipped
        assert asked == [(0, True)]  # librdkafka's cached value, no broker round trip
        assert got == [("kafka", "t", "0", 7)]
    finally:
        source._consumer = None
        source._consumer_thread.shutdown()
        source._producer_thread.shutdown()
