"""When a request's events are handed over to Kafka: once librdkafka holds them on a loop that outlives the request
(the app's lifespan ran on it), once acknowledged on a loop per request (``TestClient`` without ``with``)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from starlette.testclient import TestClient

from fastapi_events.codec import decode_event
from fastapi_events.handlers.kafka import KafkaForwardHandler
from tests.brokers.kafka.test_forwarder import read_all
from tests.delivery._app import make_app


def test_each_request_on_its_own_loop_has_its_events_acknowledged_when_it_returns(kafka_broker: Any) -> None:
    topic = f"handover-{uuid.uuid4().hex[:8]}"
    handler = KafkaForwardHandler(topic, kafka_broker.bootstrap_servers)
    client = TestClient(make_app(handler))
    try:
        for request in range(1, 4):
            assert client.post("/events/tick", json=list(range((request - 1) * 50, request * 50))).status_code == 200
            stats = handler.stats
            assert (stats.delivered, stats.queued) == (request * 50, 0)
    finally:
        # No lifespan ran, so nothing else stops its producer: left open, it would outlive the session's broker
        # and keep logging refused connections until the interpreter exits.
        asyncio.run(handler.shutdown(10))
    messages = read_all(kafka_broker.bootstrap_servers, topic, 150)
    assert sorted(decode_event(m.value())[1] for m in messages) == list(range(150))


LINGER_MS = 5000  # librdkafka holds what it was given this long before it sends anything


@pytest.mark.anyio
async def test_after_startup_a_call_returns_once_librdkafka_holds_its_events_and_reports_settle_them_later(
    kafka_broker: Any,
) -> None:
    topic = f"buffered-{uuid.uuid4().hex[:8]}"
    handler = KafkaForwardHandler(topic, kafka_broker.bootstrap_servers, config={"linger.ms": LINGER_MS})
    await handler.startup()  # what the app's lifespan does: this loop outlives the calls
    try:
        await handler.handle_many([("warmup", -1)])
        await handler.flush(60)
        for start in range(0, 30, 10):
            await handler.handle_many([("tick", n) for n in range(start, start + 10)])
        # Three calls returned one after another, none waiting for the broker: librdkafka still lingers on their
        # events (nothing sent yet), so no delivery report came in.
        assert (handler.stats.delivered, handler.stats.queued) == (1, 30)
        await handler.flush(60)  # the delivery reports settle them
        stats = handler.stats
        assert (stats.delivered, stats.queued, stats.dropped) == (31, 0, 0)
    finally:
        await handler.shutdown(10)
    messages = read_all(kafka_broker.bootstrap_servers, topic, 31)
    assert sorted(decode_event(m.value())[1] for m in messages) == list(range(-1, 30))


@pytest.mark.anyio
async def test_without_startup_a_call_waits_for_the_delivery_reports(kafka_broker: Any) -> None:
    # A loop that may end with its call (no lifespan ran on it): only the broker's acknowledgement hands over.
    topic = f"unbuffered-{uuid.uuid4().hex[:8]}"
    handler = KafkaForwardHandler(topic, kafka_broker.bootstrap_servers, config={"linger.ms": LINGER_MS})
    try:
        await handler.handle_many([("tick", n) for n in range(10)])
        assert handler.stats.delivered == 10  # returned only once the reports said so, linger and all
    finally:
        await handler.shutdown(10)


@pytest.mark.anyio
async def test_events_librdkafka_holds_count_against_max_queue_size_until_their_reports_are_in(
    kafka_broker: Any,
) -> None:
    # A call hands its events to librdkafka itself; they stay in the forwarder's bound until their delivery
    # reports are in, so a call that would exceed it waits for room (backpressure) rather than piling up more.
    topic = f"bounded-{uuid.uuid4().hex[:8]}"
    handler = KafkaForwardHandler(
        topic, kafka_broker.bootstrap_servers, max_queue_size=25, config={"linger.ms": LINGER_MS}
    )
    await handler.startup()
    try:
        await handler.handle_many([("warmup", -1)])
        await handler.flush(60)
        await handler.handle_many([("tick", n) for n in range(0, 10)])
        await handler.handle_many([("tick", n) for n in range(10, 20)])
        assert (handler.stats.delivered, handler.stats.queued) == (1, 20)  # held by librdkafka, not yet reported
        third = asyncio.ensure_future(handler.handle_many([("tick", n) for n in range(20, 30)]))
        await asyncio.sleep(1.0)
        assert not third.done()  # 20 + 10 > 25: it waits for the reports of the first two
        assert handler.stats.queued + handler.stats.waiting == 30
        assert handler.stats.queued <= 25
        await asyncio.wait_for(third, 60)
        await handler.flush(60)
        stats = handler.stats
        assert (stats.delivered, stats.queued, stats.dropped) == (31, 0, 0)
    finally:
        await handler.shutdown(10)
    messages = read_all(kafka_broker.bootstrap_servers, topic, 31)
    assert sorted(decode_event(m.value())[1] for m in messages) == list(range(-1, 30))
