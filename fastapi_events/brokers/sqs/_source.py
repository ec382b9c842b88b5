"""Amazon SQS :class:`~fastapi_events.consumer.Source`: delete after success, visibility timeout for retries.

A failed message is not deleted; its visibility timeout is set to the backoff delay, after which SQS delivers
it again with ``ApproximateReceiveCount`` one higher - that count is the attempt number. Dead letters go to
a queue of our own (``<queue>-dlq`` unless named), created when missing, with the reason as an attribute;
SQS's redrive policy cannot say *why* a message failed.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from typing import Any

from ...concurrency import BlockingExecutor
from ...consumer import (
    ATTR_DEAD_LETTER_ATTEMPTS,
    ATTR_DEAD_LETTER_REASON,
    ATTR_DEAD_LETTER_SOURCE,
    ATTR_ORIGINAL_MESSAGE_ID,
    Delivery,
    dead_letter_attributes,
)
from ._fields import MAX_ATTRIBUTES

logger = logging.getLogger("fastapi_events.sqs")

_MAX_VISIBILITY = 12 * 3600
_FIRST = (ATTR_DEAD_LETTER_REASON, ATTR_DEAD_LETTER_SOURCE, ATTR_DEAD_LETTER_ATTEMPTS, ATTR_ORIGINAL_MESSAGE_ID)


def _make_client(region: str | None, endpoint_url: str | None, kwargs: dict[str, Any]) -> Any:
    import boto3
    from botocore.config import Config

    # The runner retries receives itself; boto3 retrying inside a worker thread would only delay shutdown.
    config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=30)
    return boto3.session.Session().client("sqs", region_name=region, endpoint_url=endpoint_url, config=config, **kwargs)


def _dead_letter_queue_name(queue: str) -> str:
    name = queue.rstrip("/").rsplit("/", 1)[-1]
    if name.endswith(".fifo"):
        return name[: -len(".fifo")] + "-dlq.fifo"
    return name + "-dlq"


class SQSSource:
    """Receives from ``queue`` (a name or a queue URL) with long polling of ``wait_time`` seconds."""

    system = "aws_sqs"
    redelivers = True

    def __init__(
        self,
        queue: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        dead_letter_queue: str | None = None,
        visibility_timeout: int | None = None,
        wait_time: int = 1,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.destination = queue
        self.region = region
        self.endpoint_url = endpoint_url
        self.dead_letter_queue = dead_letter_queue or _dead_letter_queue_name(queue)
        self.visibility_timeout = visibility_timeout
        self.wait_time = wait_time
        self.client_kwargs = client_kwargs or {}
        self.fifo = queue.endswith(".fifo")
        self._client: Any = None
        self._queue_url = ""
        self._dlq_url = ""
        self._visibility = visibility_timeout or 30
        self._in_flight: set[str] = set()  # receipt handles being handled here
        self._heartbeat_task: asyncio.Task[None] | None = None
        # Receiving long-polls; deletes and visibility changes must not queue behind it.
        self._receiver = BlockingExecutor("sqs-source-receive")
        self._workers = BlockingExecutor("sqs-source", workers=4)

    async def _call(self, func: Any, *args: Any, receiver: bool = False) -> Any:
        return await (self._receiver if receiver else self._workers).run(func, *args)

    async def open(self) -> None:
        await self._call(self._open_sync)
        self._heartbeat_task = asyncio.get_running_loop().create_task(self._heartbeat())

    def _open_sync(self) -> None:
        self._client = _make_client(self.region, self.endpoint_url, self.client_kwargs)
        self._queue_url = self._url_of(self.destination)
        if self.visibility_timeout is None:
            attributes = self._client.get_queue_attributes(
                QueueUrl=self._queue_url, AttributeNames=["VisibilityTimeout"]
            )["Attributes"]
            self._visibility = int(attributes.get("VisibilityTimeout", 30))
        try:
            self._dlq_url = self._url_of(self.dead_letter_queue)
        except self._client.exceptions.QueueDoesNotExist:
            attributes = {"FifoQueue": "true"} if self.dead_letter_queue.endswith(".fifo") else {}
            self._dlq_url = self._client.create_queue(QueueName=self.dead_letter_queue, Attributes=attributes)[
                "QueueUrl"
            ]
            logger.info("created dead-letter queue %s", self.dead_letter_queue)

    def _url_of(self, queue: str) -> str:
        if queue.startswith(("https://", "http://")):
            return queue
        return str(self._client.get_queue_url(QueueName=queue)["QueueUrl"])

    async def receive(self, max_messages: int) -> Sequence[Delivery]:
        result: list[Delivery] = await self._call(self._receive_sync, max_messages, receiver=True)
        self._in_flight.update(delivery.token for delivery in result)
        return result

    def _receive_sync(self, max_messages: int) -> list[Delivery]:
        request: dict[str, Any] = {
            "QueueUrl": self._queue_url,
            "MaxNumberOfMessages": max(1, min(10, max_messages)),
            "WaitTimeSeconds": self.wait_time,
            "MessageAttributeNames": ["All"],
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "MessageGroupId"],
        }
        if self.visibility_timeout is not None:
            request["VisibilityTimeout"] = self.visibility_timeout
        response = self._client.receive_message(**request)
        deliveries = []
        for message in response.get("Messages", ()):
            system = message.get("Attributes", {})
            attributes = {
                name: value["StringValue"]
                for name, value in message.get("MessageAttributes", {}).items()
                if "StringValue" in value
            }
            deliveries.append(
                Delivery(
                    message["Body"].encode("utf-8"),
                    attributes,
                    message["MessageId"],
                    # FIFO: one message group is handled in order, like SQS itself delivers it.
                    lane=system.get("MessageGroupId"),
                    attempt=int(system.get("ApproximateReceiveCount", "1")),
                    token=message["ReceiptHandle"],
                )
            )
        return deliveries

    async def _heartbeat(self) -> None:
        # Handlers slower than the visibility timeout would see their message delivered to another consumer
        # meanwhile: keep extending it, as long as the message is being worked on here.
        # A third of the timeout: a late tick (a busy loop, a slow round trip) still lands before it runs out.
        interval = max(0.2, self._visibility / 3)
        while True:
            await asyncio.sleep(interval)
            receipts = list(self._in_flight)
            for first in range(0, len(receipts), 10):
                try:
                    await self._call(self._extend_sync, receipts[first : first + 10])
                except Exception as exc:  # the next receive() reports a real outage
                    logger.debug("extending visibility on %s failed: %s", self.destination, exc)

    def _extend_sync(self, receipts: list[str]) -> None:
        self._client.change_message_visibility_batch(
            QueueUrl=self._queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": receipt, "VisibilityTimeout": self._visibility}
                for i, receipt in enumerate(receipts)
            ],
        )

    async def ack(self, delivery: Delivery) -> None:
        self._in_flight.discard(delivery.token)
        await self._call(self._delete_sync, delivery.token)

    def _delete_sync(self, receipt: str) -> None:
        self._client.delete_message(QueueUrl=self._queue_url, ReceiptHandle=receipt)

    async def retry_later(self, delivery: Delivery, delay: float) -> None:
        self._in_flight.discard(delivery.token)
        await self._call(self._visibility_sync, delivery.token, min(_MAX_VISIBILITY, math.ceil(delay)))

    def _visibility_sync(self, receipt: str, seconds: int) -> None:
        self._client.change_message_visibility(
            QueueUrl=self._queue_url, ReceiptHandle=receipt, VisibilityTimeout=seconds
        )

    async def dead_letter(self, delivery: Delivery, reason: str, event_name: str | None, attempts: int) -> None:
        attributes = dead_letter_attributes(delivery, reason, event_name, self.destination, attempts)
        await self._call(self._dead_letter_sync, delivery, attributes)
        self._in_flight.discard(delivery.token)

    def _dead_letter_sync(self, delivery: Delivery, attributes: dict[str, str]) -> None:
        ordered = [name for name in _FIRST if name in attributes]
        ordered += [name for name in attributes if name not in _FIRST]
        request: dict[str, Any] = {
            "QueueUrl": self._dlq_url,
            "MessageBody": delivery.body.decode("utf-8", "replace") or "(empty)",
            "MessageAttributes": {
                name: {"DataType": "String", "StringValue": attributes[name]}
                for name in ordered[:MAX_ATTRIBUTES]
                if attributes[name]
            },
        }
        if self._dlq_url.endswith(".fifo"):
            request["MessageGroupId"] = delivery.lane or "dead-letters"
            request["MessageDeduplicationId"] = delivery.message_id
        self._client.send_message(**request)
        self._delete_sync(delivery.token)

    async def release(self, delivery: Delivery) -> None:
        self._in_flight.discard(delivery.token)
        # Visible again at once: another consumer need not wait out the visibility timeout.
        await self._call(self._visibility_sync, delivery.token, 0)

    async def close(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None
        self._receiver.shutdown()
        self._workers.shutdown()
        if self._client is not None:
            self._client.close()
            self._client = None


__all__ = ["SQSSource"]
