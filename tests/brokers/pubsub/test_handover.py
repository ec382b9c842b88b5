"""When a request's events are handed over to Pub/Sub: once the publisher client holds them on a loop that outlives
the request; ``patch("google.cloud.pubsub_v1.PublisherClient")`` sees every publish when the request returns."""

from __future__ import annotations

import time
from typing import Any
from unittest.mock import patch

import anyio
import pytest
from starlette.testclient import TestClient

from fastapi_events.handlers.gcp import GoogleCloudSimplePubSubHandler
from tests._servers import PubSubEmulator
from tests.delivery._app import make_app


def test_patched_publisher_client_sees_all_publishes_when_the_request_returns() -> None:
    with patch("google.cloud.pubsub_v1.PublisherClient") as client_class:
        handler = GoogleCloudSimplePubSubHandler(project_id="my-project", topic_id="orders")
        client = TestClient(make_app(handler))  # no ``with``: the request's loop is closed when post() returns
        assert client.post("/events/order.created", json=list(range(50))).status_code == 200
        publish = client_class.return_value.publish
        assert publish.call_count == 50
        topics = {call.args[0] for call in publish.call_args_list}
        assert topics == {"projects/my-project/topics/orders"}
        assert client.post("/events/order.created", json=list(range(50))).status_code == 200
        assert publish.call_count == 100
    assert handler.stats.delivered == 100


HELD_SECONDS = 5.0  # the publisher client holds what it was given this long before it sends anything


@pytest.mark.anyio
async def test_after_startup_a_call_returns_once_the_client_holds_its_events_and_results_settle_them_later(
    pubsub_env: PubSubEmulator, consumer_factory: Any
) -> None:
    consumer = consumer_factory()
    handler = GoogleCloudSimplePubSubHandler(
        consumer.project, consumer.topic_id, batch_settings_kwargs={"max_latency": HELD_SECONDS}
    )
    await handler.startup()  # what the app's lifespan does: this loop outlives the calls
    try:
        await handler.handle_many([("warmup", -1)])
        await handler.flush(60)
        started = time.monotonic()
        for start in range(0, 30, 10):
            await handler.handle_many([("tick", n) for n in range(start, start + 10)])
        # Three calls returned one after another, none waiting for the emulator: the client still holds their
        # events (its batch is sent after max_latency), so no result came in.
        assert time.monotonic() - started < HELD_SECONDS
        assert (handler.stats.delivered, handler.stats.queued) == (1, 30)
        await handler.flush(60)  # the publish results settle them
        stats = handler.stats
        assert (stats.delivered, stats.queued, stats.dropped) == (31, 0, 0)
    finally:
        await handler.shutdown(10)
    received = await anyio.to_thread.run_sync(lambda: consumer.wait_for_count(31, 30))
    assert sorted(message.body[1] for message in received) == list(range(-1, 30))


@pytest.mark.anyio
async def test_batches_larger_than_what_is_published_on_the_loop_arrive_whole_and_in_order(
    pubsub_env: PubSubEmulator, consumer_factory: Any
) -> None:
    # Ten batches of 100 in one round: each one's first 32 would be published on the loop, the rest from the
    # worker thread; a batch submitted while an earlier one's rest waits for that thread must wait behind it.
    consumer = consumer_factory(ordered=True)
    handler = GoogleCloudSimplePubSubHandler(
        consumer.project, consumer.topic_id, max_batch_size=100, ordering_key=lambda e: "k"
    )
    await handler.startup()
    try:
        await handler.handle_many([("tick", n) for n in range(1000)])
        await handler.flush(60)
        assert (handler.stats.delivered, handler.stats.queued) == (1000, 0)
    finally:
        await handler.shutdown(10)
    received = await anyio.to_thread.run_sync(lambda: consumer.wait_for_count(1000, 30))
    assert [message.body[1] for message in received] == list(range(1000))
