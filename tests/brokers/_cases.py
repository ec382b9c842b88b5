"""One case per broker for the contract suites: how to forward to it, consume it, and read its dead letters.

``make_case(request, name, ...)`` builds a :class:`BrokerCase` on a fresh topic/queue/stream of the shared
server (the in-memory broker needs none); ``Consumers`` starts consumers of it - ``python -m fastapi_events
consume`` subprocesses for real brokers (so they can be SIGKILLed), tasks on the test's event loop for the
in-memory broker (whose topics live in this process) - all running ``tests.consumer.e2e_handlers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fastapi_events.consumer import Consumer, source_from_url
from fastapi_events.delivery import ForwardHandler, RetryPolicy
from fastapi_events.testing import InMemoryBroker
from tests.consumer import e2e_handlers
from tests.consumer._processes import kill, start_consumer, stop, wait_consuming

CASES = ("memory", "sqs", "pubsub", "kafka", "redis")
SERVER_FIXTURES = {"sqs": "moto_server", "pubsub": "pubsub_emulator", "kafka": "kafka_broker", "redis": "redis_server"}
# What a consumer subprocess gets on its command line (tests/consumer/_processes.py), for the in-process ones.
MAX_ATTEMPTS = 3
RETRY = RetryPolicy(max_attempts=MAX_ATTEMPTS, initial_delay=0.05, max_delay=30.0)


def case_params() -> list[Any]:
    return [pytest.param(name, marks=[pytest.mark.servers] if name != "memory" else []) for name in CASES]


@dataclass(frozen=True)
class DeadMessage:
    body: bytes
    attributes: dict[str, str]

    @property
    def reason(self) -> str:
        return self.attributes.get("dead_letter_reason", "")

    @property
    def event_name(self) -> str:
        return self.attributes.get("event_name", "")


@dataclass
class BrokerCase:
    name: str
    url: str  # consumer URL
    make_forwarder: Callable[..., ForwardHandler]  # (key=...) -> a forwarder to the topic
    publish_raw: Callable[[bytes], None]  # a message not written by a forwarder of ours
    read_dead: Callable[[], list[DeadMessage]]  # dead letters not read before (reading may consume them)
    dead: list[DeadMessage] = field(default_factory=list)

    @property
    def in_process(self) -> bool:
        return self.name == "memory"

    def dead_letters(self) -> list[DeadMessage]:
        self.dead.extend(self.read_dead())
        return list(self.dead)


def _suffix() -> str:
    return uuid.uuid4().hex[:8]


def _memory(request: pytest.FixtureRequest, ordered: bool, options: dict[str, str]) -> BrokerCase:
    broker = InMemoryBroker(f"contract-{_suffix()}")
    seen = 0

    def read_dead() -> list[DeadMessage]:
        nonlocal seen
        records = broker.snapshot("events").dead_letters[seen:]
        seen += len(records)
        return [DeadMessage(b"", r.attributes) for r in records]

    return BrokerCase(
        "memory",
        broker.url("events"),
        lambda **kw: broker.forwarder("events", **kw),
        lambda body: broker.publish_raw("events", body),
        read_dead,
    )


def _sqs(request: pytest.FixtureRequest, ordered: bool, options: dict[str, str]) -> BrokerCase:
    import boto3

    from fastapi_events.brokers.sqs import SQSForwardHandler

    server = request.getfixturevalue("moto_server")
    monkeypatch = request.getfixturevalue("monkeypatch")
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)  # inherited by the consumer subprocesses
    client = boto3.client("sqs", **server.client_kwargs)
    queue = f"contract-{_suffix()}" + (".fifo" if ordered else "")
    attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "false"} if ordered else {}
    client.create_queue(QueueName=queue, Attributes=attributes)
    dlq = queue[: -len(".fifo")] + "-dlq.fifo" if ordered else queue + "-dlq"
    dlq_url = client.create_queue(QueueName=dlq, Attributes=attributes)["QueueUrl"]
    query = "&".join(f"{k}={v}" for k, v in options.items())

    def read_dead() -> list[DeadMessage]:
        response = client.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        )
        out = []
        for message in response.get("Messages", []):
            attrs = {k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()}
            out.append(DeadMessage(message["Body"].encode(), attrs))
            client.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
        return out

    def publish_raw(body: bytes) -> None:
        extra = {"MessageGroupId": "raw", "MessageDeduplicationId": _suffix()} if ordered else {}
        queue_url = client.get_queue_url(QueueName=queue)["QueueUrl"]
        client.send_message(QueueUrl=queue_url, MessageBody=body.decode(), **extra)

    return BrokerCase(
        "sqs",
        f"sqs://{queue}?region={server.region}&endpoint_url={server.endpoint_url}" + (f"&{query}" if query else ""),
        lambda **kw: SQSForwardHandler(queue, server.region, endpoint_url=server.endpoint_url, **kw),
        publish_raw,
        read_dead,
    )


def _pubsub(request: pytest.FixtureRequest, ordered: bool, options: dict[str, str]) -> BrokerCase:
    from google.cloud import pubsub_v1

    from fastapi_events.brokers.pubsub import GoogleCloudSimplePubSubHandler

    emulator = request.getfixturevalue("pubsub_emulator")
    monkeypatch = request.getfixturevalue("monkeypatch")
    for name, value in emulator.env.items():
        monkeypatch.setenv(name, value)
    project, suffix = emulator.project, _suffix()
    topic, subscription = f"contract-{suffix}", f"workers-{suffix}"
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic_path = publisher.topic_path(project, topic)
    publisher.create_topic(name=topic_path)
    subscriber.create_subscription(
        request={
            "name": subscriber.subscription_path(project, subscription),
            "topic": topic_path,
            "ack_deadline_seconds": 10,
            "enable_message_ordering": ordered,
        }
    )
    # Pub/Sub keeps nothing for subscriptions made later: watch the dead-letter topic from the start.
    dlq_path = publisher.topic_path(project, f"{subscription}-dlq")
    publisher.create_topic(name=dlq_path)
    watch = subscriber.subscription_path(project, f"watch-{suffix}")
    subscriber.create_subscription(name=watch, topic=dlq_path)
    request.addfinalizer(subscriber.close)

    def read_dead() -> list[DeadMessage]:
        with warnings.catch_warnings():  # deprecated, but the only way not to wait when there is nothing
            warnings.simplefilter("ignore", DeprecationWarning)
            response = subscriber.pull(subscription=watch, max_messages=50, timeout=5, return_immediately=True)
        if response.received_messages:
            subscriber.acknowledge(subscription=watch, ack_ids=[m.ack_id for m in response.received_messages])
        return [DeadMessage(m.message.data, dict(m.message.attributes)) for m in response.received_messages]

    def forwarder(key: Any = None, **kw: Any) -> ForwardHandler:
        return GoogleCloudSimplePubSubHandler(project, topic, ordering_key=key, **kw)

    return BrokerCase(
        "pubsub",
        f"pubsub://{project}/{subscription}",
        forwarder,
        lambda body: publisher.publish(topic_path, body).result(10),
        read_dead,
    )


def _kafka(request: pytest.FixtureRequest, ordered: bool, options: dict[str, str]) -> BrokerCase:
    from confluent_kafka import OFFSET_BEGINNING, Producer, TopicPartition
    from confluent_kafka import Consumer as RawConsumer
    from confluent_kafka.admin import AdminClient, NewTopic

    from fastapi_events.brokers.kafka import KafkaForwardHandler

    broker = request.getfixturevalue("kafka_broker")
    servers = broker.bootstrap_servers
    topic = f"contract-{_suffix()}"
    admin = AdminClient({"bootstrap.servers": servers})
    for future in admin.create_topics([NewTopic(topic, 4), NewTopic(f"{topic}.dlq", 1)]).values():
        future.result(30)
    reader = RawConsumer({"bootstrap.servers": servers, "group.id": f"reader-{_suffix()}"})
    reader.assign([TopicPartition(f"{topic}.dlq", 0, OFFSET_BEGINNING)])  # assigned: no group join to wait for
    request.addfinalizer(reader.close)

    def read_dead() -> list[DeadMessage]:
        messages = [m for m in reader.consume(100, 0.5) if m.error() is None]
        return [
            DeadMessage(m.value() or b"", {k: (v or b"").decode() for k, v in (m.headers() or [])}) for m in messages
        ]

    def publish_raw(body: bytes) -> None:
        producer = Producer({"bootstrap.servers": servers})
        producer.produce(topic, body)
        assert producer.flush(30) == 0

    return BrokerCase(
        "kafka",
        f"kafka://{servers}/{topic}?group={topic}&session.timeout.ms=6000&heartbeat.interval.ms=500",
        lambda **kw: KafkaForwardHandler(topic, servers, **kw),
        publish_raw,
        read_dead,
    )


def _redis(request: pytest.FixtureRequest, ordered: bool, options: dict[str, str]) -> BrokerCase:
    import redis

    from fastapi_events.brokers.redis import RedisStreamForwardHandler

    server = request.getfixturevalue("redis_server")
    stream = f"contract-{_suffix()}"
    client = redis.Redis.from_url(server.url)
    request.addfinalizer(client.close)
    last = "0"
    query = "&".join(f"{k}={v}" for k, v in {"claim_idle": "2", **options}.items())

    def read_dead() -> list[DeadMessage]:
        nonlocal last
        out = []
        for entry_id, fields in client.xrange(f"{stream}.dlq", min=f"({last}" if last != "0" else "-"):
            last = entry_id.decode()
            attrs = {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items() if k != b"body"}
            out.append(DeadMessage(fields.get(b"body", b""), attrs))
        return out

    base = server.url.rsplit("/", 1)[0]
    return BrokerCase(
        "redis",
        f"{base}/0/{stream}?group=contract&{query}",
        lambda **kw: RedisStreamForwardHandler(stream, server.url, **kw),
        lambda body: client.xadd(stream, {"body": body}),
        read_dead,
    )


_BUILDERS = {"memory": _memory, "sqs": _sqs, "pubsub": _pubsub, "kafka": _kafka, "redis": _redis}


def make_case(request: pytest.FixtureRequest, name: str, *, ordered: bool = False, **options: str) -> BrokerCase:
    """A case on a fresh destination. ``ordered``: keys are kept in order (SQS: a FIFO queue; Pub/Sub: an
    ordered subscription). ``options``: extra consumer URL options (SQS and Redis)."""
    return _BUILDERS[name](request, ordered, options)


class Consumers:
    """Consumers of one case, all writing to ``out`` (see ``tests.consumer.e2e_handlers``)."""

    def __init__(self, case: BrokerCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.case = case
        self.tmp_path = tmp_path
        self.out = tmp_path / "handled.txt"
        self.monkeypatch = monkeypatch
        self.logs: list[Path] = []
        self._processes: list[subprocess.Popen[bytes] | None] = []
        self._tasks: list[tuple[Consumer, asyncio.Task[Any]] | None] = []
        monkeypatch.setenv("E2E_OUT", str(self.out))  # for consumers in this process

    async def start(self, *, delay: float = 0.0, concurrency: int = 8, handler_timeout: float | None = None) -> int:
        """Start a consumer and wait until it consumes; returns its index."""
        index = len(self.logs)
        log = self.tmp_path / f"consumer-{index}.log"
        self.logs.append(log)
        if self.case.in_process:
            self.monkeypatch.setenv("E2E_DELAY", str(delay))
            consumer = Consumer(
                source_from_url(self.case.url),
                e2e_handlers.handler,
                concurrency=concurrency,
                retry=RETRY,
                handler_timeout=handler_timeout,
            )
            self._tasks.append((consumer, asyncio.get_running_loop().create_task(consumer.run())))
            return index
        extra = ["--handler-timeout", str(handler_timeout)] if handler_timeout is not None else []
        process = start_consumer(self.case.url, self.out, log, delay=delay, concurrency=concurrency, extra=extra)
        self._processes.append(process)
        await asyncio.to_thread(wait_consuming, log, 1)
        return index

    async def kill(self, index: int) -> None:
        """SIGKILL (in-process: cancel everything at once; unacknowledged messages come back)."""
        if self.case.in_process:
            consumer, task = self._take_task(index)
            consumer.abort()
            await task
            return
        process = self._processes[index]
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        await asyncio.to_thread(process.wait, 10)

    async def stop(self, index: int, timeout: float = 60.0) -> int:
        """SIGTERM (in-process: ``stop()``) and wait; returns the exit code."""
        if self.case.in_process:
            consumer, task = self._take_task(index)
            consumer.stop()
            await asyncio.wait_for(task, timeout)
            return 0
        process = self._processes[index]
        assert process is not None
        try:
            return await asyncio.to_thread(stop, process, timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"consumer {index} did not exit after SIGTERM\n{self.tails()}") from exc

    def assigned(self) -> bool:
        """Kafka: every consumer's last rebalance gave it partitions (other brokers: always true)."""
        if self.case.name != "kafka":
            return True
        for log in self.logs:
            moves = [line for line in log.read_text(errors="replace").splitlines() if " partitions [" in line]
            if not moves or " assigned " not in moves[-1] or moves[-1].endswith("[]"):
                return False
        return True

    def _take_task(self, index: int) -> tuple[Consumer, asyncio.Task[Any]]:
        pair = self._tasks[index]
        assert pair is not None, f"consumer {index} was stopped already"
        self._tasks[index] = None
        return pair

    def pid_count(self) -> int:
        return len({line.split()[1] for line in e2e_handlers.read_lines(str(self.out))})

    def done(self) -> list[int]:
        return e2e_handlers.read_done(str(self.out))

    def lines(self) -> list[str]:
        return e2e_handlers.read_lines(str(self.out))

    def tails(self) -> str:
        logs = [log for log in self.logs if log.exists()]
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}" for log in logs)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                done = sorted(set(self.done()))
                summary = f"{len(done)} distinct done, last {done[-5:]}" if done else "nothing done"
                raise AssertionError(f"timed out waiting for {what} ({summary})\n{self.tails()}")
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        for process in self._processes:
            if process is not None:
                kill(process)
        for pair in self._tasks:
            if pair is not None:
                pair[0].abort()
                with contextlib.suppress(Exception):
                    await pair[1]


__all__ = ["CASES", "MAX_ATTEMPTS", "BrokerCase", "Consumers", "DeadMessage", "case_params", "make_case"]
