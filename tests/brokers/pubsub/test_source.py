"""Pub/Sub consumer against the emulator: ack after success, nack for retries, dead-letter topic."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from fastapi import Depends
from google.cloud import pubsub_v1

from fastapi_events.consumer import Consumer, source_from_url
from fastapi_events.delivery import RetryPolicy
from fastapi_events.handlers.gcp import GoogleCloudSimplePubSubHandler
from fastapi_events.handlers.local import LocalHandler
from tests._servers import until

pytestmark = [pytest.mark.anyio, pytest.mark.servers]


def pull_all(subscriber: Any, path: str, expected: int, timeout: float = 30.0) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < expected and time.monotonic() < deadline:
        response = subscriber.pull(subscription=path, max_messages=50, timeout=5)
        if response.received_messages:
            subscriber.acknowledge(subscription=path, ack_ids=[m.ack_id for m in response.received_messages])
            out.extend(m.message for m in response.received_messages)
    return out


async def test_pubsub_consumer_handles_retries_and_dead_letters(
    pubsub_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in pubsub_emulator.env.items():
        monkeypatch.setenv(name, value)
    project = pubsub_emulator.project
    suffix = uuid.uuid4().hex[:8]
    topic, subscription, dlq = f"orders-{suffix}", f"workers-{suffix}", f"orders-dead-{suffix}"
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    publisher.create_topic(name=publisher.topic_path(project, topic))
    subscriber.create_subscription(
        name=subscriber.subscription_path(project, subscription),
        topic=publisher.topic_path(project, topic),
        ack_deadline_seconds=10,
    )
    # Watch the dead-letter topic from the start (Pub/Sub keeps nothing for subscriptions made later).
    publisher.create_topic(name=publisher.topic_path(project, dlq))
    dlq_watch = subscriber.subscription_path(project, f"watch-{suffix}")
    subscriber.create_subscription(name=dlq_watch, topic=publisher.topic_path(project, dlq))

    forwarder = GoogleCloudSimplePubSubHandler(project, topic)
    await forwarder.startup()
    await forwarder.handle_many([("order.created", {"n": n}) for n in range(12)] + [("ping", 1)])
    await forwarder.flush(30)
    await forwarder.shutdown()
    publisher.publish(publisher.topic_path(project, topic), b"\x00\x01 binary junk").result(10)

    handler = LocalHandler()
    seen: list[Any] = []
    attempts: dict[int, int] = {}

    def region() -> str:
        return "eu"

    @handler.register(event_name="order.*")
    async def on_order(event: tuple[str, Any], where: str = Depends(region)) -> None:
        n = event[1]["n"]
        attempts[n] = attempts.get(n, 0) + 1
        if n == 4:
            raise RuntimeError("ledger unavailable")
        if n == 6 and attempts[n] < 2:
            raise RuntimeError("transient")
        seen.append((where, n))

    @handler.register(event_name="ping")
    def on_ping(event: tuple[str, Any]) -> None:
        seen.append("ping")

    retry = RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.1)
    consumer = Consumer(source_from_url(f"pubsub://{project}/{subscription}?dlq_topic={dlq}"), handler, retry=retry)
    task = asyncio.create_task(consumer.run())
    try:
        await until(lambda: len(seen) == 12 and consumer.stats.dead_lettered == 2, timeout=60)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 60)

    assert sorted(map(str, seen)) == sorted(map(str, [("eu", n) for n in range(12) if n != 4] + ["ping"]))
    assert attempts[4] == 3  # redelivered by Pub/Sub after each nack
    assert attempts[6] == 2
    dead = await asyncio.to_thread(pull_all, subscriber, dlq_watch, 2)
    assert len(dead) == 2
    by_reason = {m.attributes["dead_letter_reason"]: m for m in dead}
    failed = next(m for reason, m in by_reason.items() if "ledger unavailable" in reason)
    assert failed.attributes["event_name"] == "order.created"
    assert failed.attributes["dead_letter_attempts"] == "3"
    junk = next(m for reason, m in by_reason.items() if "malformed" in reason)
    assert junk.data == b"\x00\x01 binary junk"
    subscriber.close()
