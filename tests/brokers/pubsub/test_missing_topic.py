"""A topic that does not exist (yet, or any more) is waited out like an outage: retried, logged, never lost."""

from __future__ import annotations

import logging
import time

import anyio
import pytest

from fastapi_events.delivery import OutboundMessage, RetryPolicy
from fastapi_events.handlers.gcp import GoogleCloudSimplePubSubHandler
from tests._servers import PubSubEmulator, wait_for

from .conftest import Consumer

pytestmark = [pytest.mark.anyio, pytest.mark.servers]


@pytest.mark.parametrize("seen_before", [False, True], ids=["never-existed", "deleted-after-use"])
async def test_missing_topic_is_retried_without_budget_and_delivered_once_it_exists(
    seen_before: bool, pubsub_env: PubSubEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "fastapi_events")
    consumer = Consumer(pubsub_env)
    dead: list[tuple[OutboundMessage, str]] = []
    handler = GoogleCloudSimplePubSubHandler(
        pubsub_env.project,
        consumer.topic_id,
        on_dead_letter=lambda message, reason: dead.append((message, reason)),
        # A tiny budget: were NOT_FOUND spending it, every event would be a dead letter within the test.
        retry=RetryPolicy(max_attempts=2, initial_delay=0.01),
    )
    handler.outage_log_interval = 0.5
    try:
        if seen_before:
            await anyio.to_thread.run_sync(consumer.create)
            consumer.start()
            await handler.handle_many([("before", {"i": -1})])
            await anyio.to_thread.run_sync(lambda: consumer.wait_for_count(1, 30))

            def delete() -> None:  # topic and subscription, as when infrastructure is recreated
                consumer.subscriber.delete_subscription(subscription=consumer.subscription_path)
                consumer.publisher.delete_topic(topic=consumer.topic_path)

            await anyio.to_thread.run_sync(delete)
        await handler.handle_many([("e", {"i": i}) for i in range(50)])
        await anyio.sleep(3.0)
        assert dead == []
        assert handler.stats.queued == 50
        assert "NOT_FOUND" in caplog.text
        assert caplog.text.count(f"cannot reach {consumer.topic_path}") >= 2  # not a single warning, then silence

        await anyio.to_thread.run_sync(consumer.create)
        if not seen_before:
            consumer.start()
        recreated = time.monotonic()
        await anyio.to_thread.run_sync(
            lambda: wait_for(lambda: handler.stats.delivered == 50 + seen_before, timeout=30, message="delivered")
        )
        assert time.monotonic() - recreated < 5.0
        await anyio.to_thread.run_sync(lambda: consumer.wait_for_count(50 + seen_before, 30))
        assert f"{consumer.topic_path} reachable again" in caplog.text
        assert dead == []
    finally:
        await handler.shutdown(5)
        consumer.close()
