"""GoogleCloudSimplePubSubHandler against the real Pub/Sub emulator, counted by a real subscriber."""

from __future__ import annotations

import enum
import time
from collections import defaultdict
from typing import Any, ClassVar

import anyio
import pytest

from fastapi_events.delivery import OutboundMessage
from fastapi_events.handlers.gcp import GoogleCloudSimplePubSubHandler
from tests._servers import PubSubEmulator

from .conftest import Consumer

pytestmark = [pytest.mark.anyio, pytest.mark.servers]


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Topic(enum.Enum):
    USER_CREATED = "user.created"


class TracedEvent(tuple):  # type: ignore[type-arg]
    """What the OpenTelemetry integration dispatches: a 2-tuple carrying the dispatching span's context."""

    trace_context: ClassVar[dict[str, str]] = {"traceparent": TRACEPARENT}


async def wait_count(consumer: Consumer, count: int, within: float = 30.0) -> None:
    await anyio.to_thread.run_sync(lambda: consumer.wait_for_count(count, within))


async def test_events_arrive_with_body_and_attributes(pubsub_env: PubSubEmulator, consumer_factory: Any) -> None:
    consumer = consumer_factory()
    handler = GoogleCloudSimplePubSubHandler(pubsub_env.project, consumer.topic_id)
    events = [
        ("order.placed", {"id": 1, "items": ["a", "b"]}),
        (Topic.USER_CREATED, {"name": "ada"}),
        ("ping", None),
        TracedEvent(("traced", {"n": 1})),
    ]
    try:
        await handler.handle_many(events)
        await handler.flush(30)
        await wait_count(consumer, len(events))
    finally:
        await handler.shutdown()

    by_name = {m.attributes["event_name"]: m for m in consumer.received()}
    assert by_name["order.placed"].body == ["order.placed", {"id": 1, "items": ["a", "b"]}]
    assert by_name["user.created"].body == ["user.created", {"name": "ada"}]
    assert by_name["ping"].body == ["ping", None]
    assert by_name["traced"].attributes["traceparent"] == TracedEvent.trace_context["traceparent"]
    ids = [m.event_id for m in consumer.received()]
    assert len(set(ids)) == len(events)
    assert all(len(i) == 32 for i in ids)
    assert all(m.ordering_key == "" for m in consumer.received())
    stats = handler.stats
    assert (stats.delivered, stats.dead_lettered, stats.dropped) == (len(events), 0, 0)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        ((10, None, None), {}),  # the 0.x positional form with batch_settings_kwargs=None (used to crash)
        ((), {"batch_settings_kwargs": None}),
        ((), {"batch_settings_kwargs": {"max_messages": 7, "max_latency": 0.05}}),
    ],
)
async def test_batch_settings_forms_work(
    pubsub_env: PubSubEmulator, consumer_factory: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    consumer = consumer_factory()
    handler = GoogleCloudSimplePubSubHandler(pubsub_env.project, consumer.topic_id, *args, **kwargs)
    expected_batch = kwargs.get("batch_settings_kwargs") or {}
    assert handler.transport.max_batch_count == expected_batch.get("max_messages", args[0] if args else 1000)
    try:
        await handler.handle_many([("n", i) for i in range(25)])
        await handler.flush(30)
        await wait_count(consumer, 25)
    finally:
        await handler.shutdown()
    assert sorted(m.body[1] for m in consumer.received()) == list(range(25))


async def test_ordering_key_is_honoured(pubsub_env: PubSubEmulator, consumer_factory: Any) -> None:
    consumer = consumer_factory(ordered=True)
    handler = GoogleCloudSimplePubSubHandler(
        pubsub_env.project,
        consumer.topic_id,
        ordering_key=lambda event: event[1]["user"],
    )
    users = ["u1", "u2", "u3"]
    try:
        # Many small "requests", interleaving keys, so that several client batches per key are involved.
        for seq in range(0, 300, 10):
            batch = [("step", {"user": u, "seq": s}) for s in range(seq, seq + 10) for u in users]
            await handler.handle_many(batch)
        await handler.flush(30)
        await wait_count(consumer, 900)
    finally:
        await handler.shutdown()

    seen: dict[str, list[int]] = defaultdict(list)
    for message in consumer.received():
        payload = message.body[1]
        assert message.ordering_key == payload["user"]
        seen[payload["user"]].append(payload["seq"])
    for user in users:
        assert seen[user] == list(range(300)), f"{user} out of order"


async def test_many_events_all_arrive(pubsub_env: PubSubEmulator, consumer_factory: Any) -> None:
    consumer = consumer_factory()
    handler = GoogleCloudSimplePubSubHandler(pubsub_env.project, consumer.topic_id)
    await handler.startup()
    total, per_request = 2000, 20
    started = time.perf_counter()
    try:
        for request in range(total // per_request):
            first = request * per_request
            await handler.handle_many([("bulk", {"i": first + j}) for j in range(per_request)])
        await handler.flush(60)
        elapsed = time.perf_counter() - started
        await wait_count(consumer, total, within=60)
    finally:
        await handler.shutdown()
    assert {m.body[1]["i"] for m in consumer.received()} == set(range(total))
    assert handler.stats.delivered == total
    print(f"\n{total} events to the Pub/Sub emulator in {elapsed:.2f}s = {total / elapsed:.0f} events/s")


async def test_oversize_event_dead_letters_and_large_one_arrives(
    pubsub_env: PubSubEmulator, consumer_factory: Any
) -> None:
    consumer = consumer_factory()
    dead: list[tuple[OutboundMessage, str]] = []
    handler = GoogleCloudSimplePubSubHandler(
        pubsub_env.project, consumer.topic_id, on_dead_letter=lambda m, r: dead.append((m, r))
    )
    try:
        await handler.handle_many([("small", 1), ("huge", "x" * 10_500_000), ("large", "y" * 3_000_000), ("small", 2)])
        await handler.flush(30)
        await wait_count(consumer, 3)
    finally:
        await handler.shutdown()
    assert sorted(m.attributes["event_name"] for m in consumer.received()) == ["large", "small", "small"]
    assert [m.event_name for m, _ in dead] == ["huge"]
    assert "bytes, over the" in dead[0][1]


async def test_shutdown_flushes_everything(pubsub_env: PubSubEmulator, consumer_factory: Any) -> None:
    consumer = consumer_factory()
    handler = GoogleCloudSimplePubSubHandler(pubsub_env.project, consumer.topic_id)
    for request in range(30):
        await handler.handle_many([("bye", {"i": request * 10 + j}) for j in range(10)])
    # No flush(): shutdown alone must deliver what was accepted, then stop the client.
    await handler.shutdown(timeout=30)
    assert handler.stats.delivered == 300
    assert handler.transport._client is None  # type: ignore[attr-defined]
    await wait_count(consumer, 300)


async def test_custom_serializer_and_single_handle(pubsub_env: PubSubEmulator, consumer_factory: Any) -> None:
    consumer = consumer_factory()
    handler = GoogleCloudSimplePubSubHandler(
        pubsub_env.project, consumer.topic_id, serializer=lambda event: f"{event[0]}={event[1]}"
    )
    try:
        await handler.handle(("custom", 42))
        await handler.flush(30)
        await wait_count(consumer, 1)
    finally:
        await handler.shutdown()
    (message,) = consumer.received()
    assert message.data == b"custom=42"
    assert message.attributes["event_name"] == "custom"
