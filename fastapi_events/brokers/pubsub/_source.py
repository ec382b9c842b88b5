"""Google Cloud Pub/Sub :class:`~fastapi_events.consumer.Source` on the client library's streaming pull.

The library delivers messages on its own threads and keeps extending their ack deadlines until we ack or
nack; each message is handed to the event loop with ``call_soon_threadsafe``. A failed message is nacked
after the backoff delay (held, still leased, until then), so Pub/Sub redelivers it. Dead letters are
published to a topic of our own (``<subscription>-dlq`` unless named, created when missing) with the reason
as an attribute, then the original is acked.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient
from google.cloud.pubsub_v1.types import FlowControl

from ...concurrency import BlockingExecutor
from ...consumer import Delivery, dead_letter_attributes

logger = logging.getLogger("fastapi_events.pubsub")

_ATTEMPTS_REMEMBERED = 10_000
LEASE_SECONDS = 10


class PubSubSource:
    """Pulls from ``projects/<project>/subscriptions/<subscription>``; ``max_messages`` bounds the leased ones."""

    system = "gcp_pubsub"
    redelivers = True

    def __init__(
        self,
        project: str,
        subscription: str,
        *,
        dead_letter_topic: str | None = None,
        max_messages: int = 100,
        publish_timeout: float = 30.0,
    ) -> None:
        self.project = project
        self.subscription = subscription
        self.destination = f"projects/{project}/subscriptions/{subscription}"
        self.dead_letter_topic = dead_letter_topic or f"{subscription}-dlq"
        self.max_messages = max_messages
        self.publish_timeout = publish_timeout
        self._subscriber: Any = None
        self._publisher: Any = None
        self._streaming: Any = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads = BlockingExecutor("pubsub-source", workers=2)
        self._delayed: dict[str, tuple[asyncio.TimerHandle, Delivery]] = {}
        # Without a dead-letter policy on the subscription Pub/Sub does not count deliveries: we do.
        self._attempts: OrderedDict[str, int] = OrderedDict()

    @property
    def dead_letter_topic_path(self) -> str:
        if self.dead_letter_topic.startswith("projects/"):
            return self.dead_letter_topic
        return f"projects/{self.project}/topics/{self.dead_letter_topic}"

    async def _call(self, func: Any, *args: Any) -> Any:
        return await self._threads.run(func, *args)

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        await self._call(self._open_sync)

    def _open_sync(self) -> None:
        self._publisher = PublisherClient()
        try:
            self._publisher.create_topic(name=self.dead_letter_topic_path, timeout=30)
            logger.info("created dead-letter topic %s", self.dead_letter_topic_path)
        except api_exceptions.AlreadyExists:
            pass
        self._subscriber = SubscriberClient()
        self._streaming = self._subscriber.subscribe(
            self.destination,
            callback=self._on_message,
            # Leases in 10 s steps (the service's minimum), renewed by the library while we hold a message: a
            # consumer that dies gives its messages back within seconds, not after the library's default 60 s.
            flow_control=FlowControl(max_messages=self.max_messages, max_duration_per_lease_extension=LEASE_SECONDS),
            await_callbacks_on_shutdown=True,
        )

    def _on_message(self, message: Any) -> None:  # a library thread
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._queue.put_nowait, message)

    async def receive(self, max_messages: int) -> Sequence[Delivery]:
        if self._streaming is not None and self._streaming.done():
            exc = self._streaming.exception()
            raise ConnectionError(f"streaming pull of {self.destination} stopped: {exc}")
        try:
            first = await asyncio.wait_for(self._queue.get(), 1.0)
        except asyncio.TimeoutError:
            return []
        messages = [first]
        while len(messages) < max_messages and not self._queue.empty():
            messages.append(self._queue.get_nowait())
        return [self._delivery(message) for message in messages]

    def _delivery(self, message: Any) -> Delivery:
        seen = self._attempts.pop(message.message_id, 0) + 1
        self._attempts[message.message_id] = seen
        while len(self._attempts) > _ATTEMPTS_REMEMBERED:
            self._attempts.popitem(last=False)
        return Delivery(
            bytes(message.data),
            dict(message.attributes),
            message.message_id,
            lane=message.ordering_key or None,
            attempt=message.delivery_attempt or seen,
            token=message,
        )

    async def ack(self, delivery: Delivery) -> None:
        delivery.token.ack()
        self._attempts.pop(delivery.message_id, None)

    async def retry_later(self, delivery: Delivery, delay: float) -> None:
        assert self._loop is not None
        self._delayed[delivery.message_id] = (self._loop.call_later(delay, self._nack, delivery), delivery)

    def _nack(self, delivery: Delivery) -> None:
        self._delayed.pop(delivery.message_id, None)
        delivery.token.nack()

    async def dead_letter(self, delivery: Delivery, reason: str, event_name: str | None, attempts: int) -> None:
        attributes = dead_letter_attributes(delivery, reason, event_name, self.destination, attempts)
        await self._call(self._publish_sync, delivery.body, attributes)
        delivery.token.ack()
        self._attempts.pop(delivery.message_id, None)

    def _publish_sync(self, body: bytes, attributes: dict[str, str]) -> None:
        future = self._publisher.publish(self.dead_letter_topic_path, body, **attributes)
        future.result(timeout=self.publish_timeout)

    async def release(self, delivery: Delivery) -> None:
        delivery.token.nack()

    async def close(self) -> None:
        for handle, delivery in list(self._delayed.values()):
            handle.cancel()
            delivery.token.nack()  # now: the process is going away
        self._delayed.clear()
        try:
            await self._call(self._stop_streaming_sync)
            await asyncio.sleep(0)  # run the hand-overs the last callbacks scheduled
            while not self._queue.empty():  # received but never handed to the runner
                self._queue.get_nowait().nack()
            await self._call(self._close_sync)
        finally:
            self._threads.shutdown()

    def _stop_streaming_sync(self) -> None:
        if self._streaming is not None:
            self._streaming.cancel()
            try:
                self._streaming.result(timeout=30)
            except Exception:
                logger.debug("streaming pull ended with an error", exc_info=True)

    def _close_sync(self) -> None:
        if self._subscriber is not None:
            self._subscriber.close()
        if self._publisher is not None:
            self._publisher.stop()


__all__ = ["PubSubSource"]
