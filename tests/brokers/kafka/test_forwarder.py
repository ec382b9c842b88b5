"""KafkaForwardHandler against a real Kafka-protocol broker (tansu), counted with a real consumer."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, ClassVar

import pytest
from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME, Consumer, TopicPartition

from fastapi_events.codec import decode_event
from fastapi_events.handlers.kafka import KafkaForwardHandler

pytestmark = [pytest.mark.anyio, pytest.mark.servers]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    # Assigned, not subscribed: no group join to wait for.
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            messages.extend(m for m in consumer.consume(500, 0.5) if m.error() is None)
        # A little longer: more than expected would be duplicates.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            messages.extend(m for m in consumer.consume(500, 0.2) if m.error() is None)
    finally:
        consumer.close()
    return messages


async def test_events_are_delivered_with_headers_and_per_key_order(kafka_broker: Any, tmp_path: Any) -> None:
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    forwarder = KafkaForwardHandler(
        topic,
        kafka_broker.bootstrap_servers,
        key=lambda event: str(event[1]["customer"]),
        spool_path=tmp_path / "spool.db",
        config={"linger.ms": 2},
    )
    await forwarder.startup()
    for n in range(300):
        await forwarder.handle_many([("order.created", {"customer": n % 7, "n": n})])
    await forwarder.flush(30)
    stats = forwarder.stats
    await forwarder.shutdown()
    assert stats.delivered == 300
    assert stats.queued == 0
    assert stats.dead_lettered == 0

    messages = read_all(kafka_broker.bootstrap_servers, topic, 300)
    assert len(messages) == 300  # exactly once: idempotent producer, nothing resent
    per_key: dict[bytes, list[int]] = {}
    partitions: dict[bytes, set[int]] = {}
    for message in messages:
        name, payload = decode_event(message.value())
        headers = dict(message.headers())
        assert name == "order.created"
        assert headers["event_name"] == b"order.created"
        assert len(headers["event_id"]) == 32
        assert message.key() == str(payload["customer"]).encode()
        kind, stamp = message.timestamp()  # the producer's clock at the send, as librdkafka sets it by default
        assert kind == TIMESTAMP_CREATE_TIME
        assert abs(stamp / 1000 - time.time()) < 120
        per_key.setdefault(message.key(), []).append(payload["n"])
        partitions.setdefault(message.key(), set()).add(message.partition())
    assert all(len(p) == 1 for p in partitions.values())  # one key -> one partition
    for values in per_key.values():
        assert values == sorted(values)  # handed in order -> stored in order


async def test_serializer_and_trace_context_headers(kafka_broker: Any) -> None:
    topic = f"custom-{uuid.uuid4().hex[:8]}"

    class Traced(tuple):  # type: ignore[type-arg]
        trace_context: ClassVar[dict[str, str]] = {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}

    forwarder = KafkaForwardHandler(
        topic, kafka_broker.bootstrap_servers, serializer=lambda event: json.dumps({"only": event[1]})
    )
    await forwarder.startup()
    await forwarder.handle_many([Traced(("user.created", 1))])
    await forwarder.flush(30)
    await forwarder.shutdown()
    [message] = read_all(kafka_broker.bootstrap_servers, topic, 1)
    assert json.loads(message.value()) == {"only": 1}
    headers = dict(message.headers())
    assert headers["traceparent"].decode().startswith("00-aaaa")
    assert headers["event_name"] == b"user.created"


@pytest.mark.parametrize("message_timeout_ms", [2000, 120_000])
async def test_outage_keeps_events_in_the_spool_until_the_broker_is_back(
    fresh_kafka_broker: Any, tmp_path: Any, message_timeout_ms: int
) -> None:
    # With a long message.timeout.ms librdkafka still holds the events when the broker comes back: the forwarder
    # resends them (it gave them up when every broker went down), so the old producer must not send them as well.
    broker = fresh_kafka_broker()
    topic = f"outage-{uuid.uuid4().hex[:8]}"
    forwarder = KafkaForwardHandler(
        topic,
        broker.bootstrap_servers,
        spool_path=tmp_path / "spool.db",
        config={"message.timeout.ms": message_timeout_ms},
    )
    await forwarder.startup()
    await forwarder.handle_many([("before", {"n": 0})])
    await forwarder.flush(30)
    broker.kill()
    for n in range(1, 21):
        await forwarder.handle_many([("during", {"n": n})])
    await forwarder.flush(3)  # cannot deliver now
    assert forwarder.stats.queued == 20
    broker.restart()
    await forwarder.flush(60)
    stats = forwarder.stats
    await forwarder.shutdown()
    assert stats.queued == 0
    assert stats.dead_lettered == 0  # an outage does not use up the retry budget
    # tansu's memory storage starts empty after a restart: the 20 must be there, "before" is gone.
    messages = read_all(broker.bootstrap_servers, topic, 20)
    assert sorted(decode_event(m.value())[1]["n"] for m in messages) == list(range(1, 21))


async def test_delivery_timeout_reports_are_an_outage_not_a_failed_event() -> None:
    from confluent_kafka import KafkaError

    from fastapi_events.brokers.kafka._transport import KafkaTransport, KafkaUnreachableError, classify
    from fastapi_events.delivery import OutboundMessage, Outcome
    from tests._servers import free_port

    transport = KafkaTransport(
        "nowhere", f"127.0.0.1:{free_port()}", config={"message.timeout.ms": 1000}, create_topic=False
    )
    await transport.open()
    started = time.monotonic()
    try:
        # Which report librdkafka gives first is a race (its delivery timeout equals the all-down grace here);
        # either one must count as the broker being unreachable.
        with pytest.raises(KafkaUnreachableError, match=r"_ALL_BROKERS_DOWN|_MSG_TIMED_OUT"):
            await transport.send_batch([OutboundMessage("1", "e", b'["e",1]', {"event_name": "e"})])
    finally:
        await transport.close()
    assert time.monotonic() - started < 8  # librdkafka says so when it loses the last broker, no safety timeout
    assert classify(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)).outcome is Outcome.PERMANENT
    assert classify(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION)).outcome is Outcome.RETRY
