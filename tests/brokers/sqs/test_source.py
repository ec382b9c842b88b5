"""SQS consumer against moto_server: delete after success, visibility-timeout retries, dead-letter queue."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import boto3
import pytest
from fastapi import Depends

from fastapi_events.consumer import Consumer, source_from_url
from fastapi_events.delivery import RetryPolicy
from fastapi_events.handlers.aws import SQSForwardHandler
from fastapi_events.handlers.local import LocalHandler
from tests._servers import until

pytestmark = [pytest.mark.anyio, pytest.mark.servers]


def drain(client: Any, url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        response = client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        )
        messages = response.get("Messages", [])
        if not messages:
            return out
        out.extend(messages)


async def test_sqs_consumer_handles_retries_and_dead_letters(moto_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in moto_server.env.items():
        monkeypatch.setenv(name, value)
    queue = f"orders-{uuid.uuid4().hex[:8]}"
    client = boto3.client("sqs", **moto_server.client_kwargs)
    queue_url = client.create_queue(QueueName=queue)["QueueUrl"]

    forwarder = SQSForwardHandler(queue, moto_server.region, endpoint_url=moto_server.endpoint_url)
    await forwarder.startup()
    await forwarder.handle_many([("order.created", {"n": n}) for n in range(15)] + [("audit", "x")])
    await forwarder.flush(30)
    await forwarder.shutdown()
    client.send_message(QueueUrl=queue_url, MessageBody="[1, 2, 3]")

    handler = LocalHandler()
    seen: list[Any] = []
    attempts: dict[int, int] = {}

    def source_name() -> str:
        return "sqs"

    @handler.register(event_name="order.*")
    async def on_order(event: tuple[str, Any], src: str = Depends(source_name)) -> None:
        n = event[1]["n"]
        attempts[n] = attempts.get(n, 0) + 1
        if n == 3:
            raise RuntimeError("stock service timeout")
        if n == 5 and attempts[n] == 1:
            raise RuntimeError("transient")
        seen.append((src, n))

    @handler.register(event_name="audit")
    def on_audit(event: tuple[str, Any]) -> None:
        seen.append(("audit", event[1]))

    # Region and endpoint come from the URL here; the environment would do as well.
    url = f"sqs://{queue}?region={moto_server.region}&endpoint_url={moto_server.endpoint_url}"
    retry = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.01)
    consumer = Consumer(source_from_url(url), handler, retry=retry)
    task = asyncio.create_task(consumer.run())
    try:
        await until(lambda: len(seen) == 15 and consumer.stats.dead_lettered == 2)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 30)

    assert sorted(map(str, seen)) == sorted(map(str, [("sqs", n) for n in range(15) if n != 3] + [("audit", "x")]))
    assert attempts[3] == 3  # counted by SQS's ApproximateReceiveCount across redeliveries
    assert attempts[5] == 2
    assert drain(client, queue_url) == []  # everything deleted (time enough for any retry to reappear)

    dlq_url = client.get_queue_url(QueueName=f"{queue}-dlq")["QueueUrl"]
    dead = drain(client, dlq_url)
    assert len(dead) == 2
    by_reason = {m["MessageAttributes"]["dead_letter_reason"]["StringValue"]: m for m in dead}
    failed = next(m for reason, m in by_reason.items() if "stock service timeout" in reason)
    assert failed["MessageAttributes"]["event_name"]["StringValue"] == "order.created"
    assert failed["MessageAttributes"]["dead_letter_attempts"]["StringValue"] == "3"
    assert '"n":3' in failed["Body"]
    malformed = next(m for reason, m in by_reason.items() if "malformed" in reason)
    assert malformed["Body"] == "[1, 2, 3]"


async def test_region_and_endpoint_from_environment(moto_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in moto_server.env.items():
        monkeypatch.setenv(name, value)
    queue = f"env-{uuid.uuid4().hex[:8]}"
    client = boto3.client("sqs", **moto_server.client_kwargs)
    client.create_queue(QueueName=queue)
    source = source_from_url(f"sqs://{queue}")
    await source.open()
    try:
        assert await source.receive(10) == []
    finally:
        await source.close()


async def test_slow_handler_keeps_its_message_invisible(moto_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in moto_server.env.items():
        monkeypatch.setenv(name, value)
    queue = f"slow-{uuid.uuid4().hex[:8]}"
    client = boto3.client("sqs", **moto_server.client_kwargs)
    url = client.create_queue(QueueName=queue, Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
    client.send_message(QueueUrl=url, MessageBody='["slow", null]')
    handled: list[str] = []
    started = asyncio.Event()

    slow_handler = LocalHandler()

    @slow_handler.register(event_name="slow")
    async def slow(event: tuple[str, Any]) -> None:
        started.set()
        await asyncio.sleep(5)  # 2.5 visibility timeouts
        handled.append("first")

    other = LocalHandler()
    other.register(lambda event: handled.append("second"), event_name="slow")
    first = Consumer(source_from_url(f"sqs://{queue}"), slow_handler)
    first_task = asyncio.create_task(first.run())
    await asyncio.wait_for(started.wait(), 30)
    second = Consumer(source_from_url(f"sqs://{queue}"), other)
    second_task = asyncio.create_task(second.run())
    try:
        await until(lambda: bool(handled))
        await asyncio.sleep(2.5)
    finally:
        first.stop()
        second.stop()
        await asyncio.gather(first_task, second_task)
    assert handled == ["first"]
    assert drain(client, url) == []
