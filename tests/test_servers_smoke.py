"""Smoke tests: every server fixture in tests/_servers.py gives a real, working broker."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests._servers import (
    KafkaBroker,
    ManagedServer,
    MotoServer,
    PubSubEmulator,
    RedisServer,
    ServerStartError,
    free_port,
    tcp_connectable,
    wait_for,
)

pytestmark = pytest.mark.servers


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------------------------------ per server


def _sqs_roundtrip(server: MotoServer) -> None:
    import boto3

    sqs = boto3.client("sqs", **server.client_kwargs)
    queue_url = sqs.create_queue(QueueName=_unique("smoke"))["QueueUrl"]
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody='["order.created", {"id": 1}]',
        MessageAttributes={"event_name": {"DataType": "String", "StringValue": "order.created"}},
    )
    received = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=1, MessageAttributeNames=["All"]
    )
    messages = received["Messages"]
    assert len(messages) == 1
    assert messages[0]["Body"] == '["order.created", {"id": 1}]'
    assert messages[0]["MessageAttributes"]["event_name"]["StringValue"] == "order.created"
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])


def test_moto_server_sqs_send_and_receive(moto_server: MotoServer) -> None:
    assert moto_server.endpoint_url == f"http://127.0.0.1:{moto_server.port}"
    _sqs_roundtrip(moto_server)


def _pubsub_roundtrip(server: PubSubEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    try:
        topic = publisher.topic_path(server.project, _unique("topic"))
        subscription = subscriber.subscription_path(server.project, _unique("sub"))
        publisher.create_topic(name=topic)
        subscriber.create_subscription(name=subscription, topic=topic)
        message_id = publisher.publish(topic, b'["user.signed_up", {}]', event_name="user.signed_up").result(timeout=10)
        assert message_id
        response = subscriber.pull(subscription=subscription, max_messages=10, timeout=10)
        assert len(response.received_messages) == 1
        received = response.received_messages[0]
        assert received.message.data == b'["user.signed_up", {}]'
        assert dict(received.message.attributes) == {"event_name": "user.signed_up"}
        subscriber.acknowledge(subscription=subscription, ack_ids=[received.ack_id])
    finally:
        subscriber.close()
        publisher.transport.close()


def test_pubsub_emulator_publish_and_pull(pubsub_emulator: PubSubEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    assert pubsub_emulator.host == f"127.0.0.1:{pubsub_emulator.port}"
    assert pubsub_emulator.env == {"PUBSUB_EMULATOR_HOST": pubsub_emulator.host}
    _pubsub_roundtrip(pubsub_emulator, monkeypatch)


def _kafka_roundtrip(broker: KafkaBroker) -> None:
    from confluent_kafka import Consumer, Producer

    topic = _unique("smoke")
    producer = Producer({**broker.config, "enable.idempotence": True})
    delivered: list[Any] = []
    producer.produce(
        topic,
        value=b'["cart.checked_out", {}]',
        key=b"cart-1",
        headers={"event_name": b"cart.checked_out"},
        on_delivery=lambda err, msg: delivered.append(err or msg),
    )
    assert producer.flush(10) == 0
    assert len(delivered) == 1
    assert not isinstance(delivered[0], Exception), delivered[0]

    # tansu completes a consumer-group join only after about half of session.timeout.ms, so keep it short.
    consumer = Consumer(
        {
            **broker.config,
            "group.id": _unique("group"),
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 2000,
            "heartbeat.interval.ms": 200,
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        message = None
        while message is None and time.monotonic() < deadline:
            candidate = consumer.poll(0.2)
            if candidate is not None and candidate.error() is None:
                message = candidate
        assert message is not None, "no message consumed within 20s"
        assert message.value() == b'["cart.checked_out", {}]'
        assert message.key() == b"cart-1"
        assert dict(message.headers() or []) == {"event_name": b"cart.checked_out"}
    finally:
        consumer.close()


def test_kafka_broker_produce_and_consume(kafka_broker: KafkaBroker) -> None:
    assert kafka_broker.bootstrap_servers == f"127.0.0.1:{kafka_broker.port}"
    _kafka_roundtrip(kafka_broker)


def _redis_roundtrip(server: RedisServer, stream: str | None = None) -> None:
    import redis

    client = redis.Redis.from_url(server.url)
    try:
        stream = stream or _unique("stream")
        entry_id = client.xadd(stream, {"event": '["order.paid", {}]', "event_name": "order.paid"})
        entries = client.xrange(stream)
        assert entries == [(entry_id, {b"event": b'["order.paid", {}]', b"event_name": b"order.paid"})]
    finally:
        client.close()


def test_redis_server_xadd_and_xrange(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    _redis_roundtrip(redis_server)


@pytest.mark.anyio
async def test_redis_server_asyncio_client(redis_server: RedisServer) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        stream = _unique("stream")
        entry_id = await client.xadd(stream, {"k": "v"})
        assert await client.xrange(stream) == [(entry_id, {b"k": b"v"})]
    finally:
        await client.aclose()


# ------------------------------------------------------------------------------------------ faults


@pytest.mark.parametrize("kind", ["moto", "pubsub", "kafka", "redis"])
def test_kill_and_restart_on_same_port(
    kind: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    factory: Callable[[], ManagedServer] = request.getfixturevalue(
        {
            "moto": "fresh_moto_server",
            "pubsub": "fresh_pubsub_emulator",
            "kafka": "fresh_kafka_broker",
            "redis": "fresh_redis_server",
        }[kind]
    )
    server = factory()
    port, first_pid = server.port, server.pid
    assert server.is_running

    server.kill()
    assert not server.is_running
    wait_for(lambda: not tcp_connectable(port), timeout=5, message="the killed server's port to close")

    server.restart()
    assert server.is_running
    assert server.port == port
    assert server.pid != first_pid
    if isinstance(server, MotoServer):
        _sqs_roundtrip(server)
    elif isinstance(server, PubSubEmulator):
        _pubsub_roundtrip(server, monkeypatch)
    elif isinstance(server, KafkaBroker):
        _kafka_roundtrip(server)
    else:
        assert isinstance(server, RedisServer)
        _redis_roundtrip(server)


def test_redis_appendonly_survives_kill(fresh_redis_server: Callable[..., RedisServer]) -> None:
    import redis

    server = fresh_redis_server(appendonly=True)
    client = redis.Redis.from_url(server.url)
    try:
        client.xadd("durable", {"n": "1"})
    finally:
        client.close()

    server.kill()
    server.restart()

    client = redis.Redis.from_url(server.url)
    try:
        assert [fields for _id, fields in client.xrange("durable")] == [{b"n": b"1"}]
    finally:
        client.close()


def test_stop_is_graceful_and_context_manager() -> None:
    with RedisServer() as server:
        assert server.is_running
        pid = server.pid
        assert pid is not None
        _redis_roundtrip(server)
    assert not server.is_running
    assert not tcp_connectable(server.port)
    assert "User requested shutdown" in server.read_log()  # SIGTERM, not SIGKILL
    server.close()


# ------------------------------------------------------------------------------------------ failures


def test_missing_binary_fails_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    server = RedisServer()
    monkeypatch.setattr(RedisServer, "_binary", lambda self: None)
    with pytest.raises(pytest.fail.Exception, match="apt-get install redis-server"):
        server.start()
    assert not server.is_running
    server.close()


def test_startup_failure_reports_the_server_log() -> None:
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        server = RedisServer(port=taken, stop_timeout=0.5)
        with pytest.raises(ServerStartError, match="still in use"):
            server.start()
        assert not server.is_running
        server.close()


def test_startup_failure_includes_log() -> None:
    server = RedisServer(port=free_port())
    server.command = lambda: ["redis-server", "--no-such-option", "1"]  # type: ignore[method-assign]
    with pytest.raises(ServerStartError) as excinfo:
        server.start()
    message = str(excinfo.value)
    assert "exited with code" in message
    assert "no-such-option" in message
    assert not server.is_running
    server.close()
