"""Kafka :class:`~fastapi_events.consumer.Source` on confluent-kafka: manual commits of finished offsets only.

The ``Consumer`` object lives in one worker thread of its own (polls block, and rebalance callbacks run inside
the poll, where they must commit what is finished before partitions move to another member). Messages with
the same key share a lane, so they are handled in partition order; different keys run concurrently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from ... import _hooks
from ...concurrency import BlockingExecutor
from ...consumer import Delivery, dead_letter_attributes
from ._admin import connection_config, ensure_topics
from ._offsets import OffsetTracker

logger = logging.getLogger("fastapi_events.kafka")

#: Seconds between two consumer lag reports (only made while someone observes lag, see ``_hooks``).
LAG_INTERVAL = 1.0


def headers_to_attributes(headers: Any) -> dict[str, str]:
    items = headers.items() if isinstance(headers, dict) else headers or ()
    return {
        name: value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")
        for name, value in items
    }


class KafkaSource:
    """Reads ``topic`` as a member of consumer group ``group``; dead letters go to ``<topic>.dlq``.

    ``ordering="key"`` (default) keeps per-key order; ``"partition"`` handles each partition strictly one
    message at a time. ``config`` holds extra librdkafka settings (e.g. ``session.timeout.ms``).
    """

    system = "kafka"
    redelivers = False

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        group: str = "fastapi-events",
        dead_letter_topic: str | None = None,
        config: dict[str, str] | None = None,
        ordering: str = "key",
        poll_timeout: float = 0.5,
        create_topics: bool = True,
    ) -> None:
        if ordering not in ("key", "partition"):
            raise ValueError("ordering must be 'key' or 'partition'")
        self.destination = topic
        self.group = group
        self.dead_letter_topic = dead_letter_topic or f"{topic}.dlq"
        self.ordering = ordering
        self.poll_timeout = poll_timeout
        self.create_topics = create_topics
        self.config: dict[str, str] = {"bootstrap.servers": bootstrap_servers, **(config or {})}
        self._tracker = OffsetTracker()
        self._held: list[Message] = []
        self._consumer: Any = None
        self._producer: Any = None
        self._next_lag_report = 0.0
        # One thread per client: the consumer thread is often parked in a poll, dead letters must not wait.
        self._consumer_thread = BlockingExecutor("kafka-source")
        self._producer_thread = BlockingExecutor("kafka-source-dlq")

    async def _in_consumer_thread(self, func: Any, *args: Any) -> Any:
        return await self._consumer_thread.run(func, *args)

    async def open(self) -> None:
        await self._in_consumer_thread(self._open_sync)

    def _open_sync(self) -> None:
        if self.create_topics:
            ensure_topics(self.config, [self.destination, self.dead_letter_topic])
        self._consumer = Consumer(
            {
                "group.id": self.group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                **self.config,
            }
        )
        self._consumer.subscribe(
            [self.destination], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self._producer = Producer(
            {**connection_config(self.config), "acks": "all", "enable.idempotence": True, "linger.ms": 0}
        )

    # -- rebalance callbacks (consumer thread, inside consume()) --------------------------------------------
    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._tracker.assign([tp.partition for tp in partitions])
        logger.info("assigned %s partitions %s", self.destination, [tp.partition for tp in partitions])

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # The last chance to commit for these partitions; whatever is unfinished is handled again by the
        # member that gets them (the runner's ack for it is then ignored).
        self._commit(self._tracker.revoke([tp.partition for tp in partitions]))
        logger.info("revoked %s partitions %s", self.destination, [tp.partition for tp in partitions])

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._tracker.revoke([tp.partition for tp in partitions])  # not ours any more: committing would fail
        logger.warning("lost %s partitions %s", self.destination, [tp.partition for tp in partitions])

    def _commit(self, offsets: list[tuple[int, int]]) -> None:
        if not offsets or self._consumer is None:
            return
        try:
            self._consumer.commit(
                offsets=[TopicPartition(self.destination, p, o) for p, o in offsets], asynchronous=False
            )
        except Exception as exc:
            logger.warning("committing %s offsets %s failed: %s", self.destination, offsets, exc)
            self._tracker.restore(offsets)

    # -- receiving -----------------------------------------------------------------------------------------
    async def receive(self, max_messages: int) -> Sequence[Delivery]:
        result: list[Delivery] = await self._in_consumer_thread(self._receive_sync, max_messages)
        return result

    def _receive_sync(self, max_messages: int) -> list[Delivery]:
        self._commit(self._tracker.committable())
        messages: list[Message]
        if self._held:  # returned by a poll in idle(): they come first, so offsets stay in order
            messages, self._held = self._held[:max_messages], self._held[max_messages:]
        else:
            messages = self._consumer.consume(max(1, min(max_messages, 10_000)), self.poll_timeout)
        deliveries: list[Delivery] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    logger.warning("consuming %s: %s", self.destination, error)
                continue
            partition, offset = message.partition() or 0, message.offset() or 0
            generation = self._tracker.received(partition, offset)
            if generation is None:
                continue  # from a partition revoked in this very poll
            key = message.key()
            lane: object = None  # keyless messages promise no order: they run concurrently
            if self.ordering == "partition":
                lane = partition
            elif key is not None:
                lane = (partition, key)
            deliveries.append(
                Delivery(
                    message.value() or b"",
                    headers_to_attributes(message.headers()),
                    f"{self.destination}/{partition}@{offset}",
                    lane=lane,
                    token=(partition, generation, offset, key),
                )
            )
        self._report_lag()
        return deliveries

    def _report_lag(self) -> None:
        """Consumer thread, at most once per ``LAG_INTERVAL``: lag of each partition handed out messages.

        Lag is the broker's high watermark minus the first offset not finished yet (what a restart would read
        again). librdkafka keeps the high watermark of each fetch response: no round trip to the broker.
        """
        if not _hooks.on_consumer_lag or self._consumer is None:
            return
        now = time.monotonic()
        if now < self._next_lag_report:
            return
        self._next_lag_report = now + LAG_INTERVAL
        for partition, offset in self._tracker.unfinished_from().items():
            try:
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self.destination, partition), cached=True
                )
            except Exception as exc:  # e.g. revoked during the last poll
                logger.debug("no watermark for %s [%d]: %s", self.destination, partition, exc)
                continue
            if high is None or high < 0:
                continue  # nothing fetched from this partition yet
            _hooks.consumer_lag(self.system, self.destination, str(partition), max(0, high - offset))

    async def idle(self) -> None:
        """Called by the runner while every slot is busy: commit, and poll without taking new messages.

        Rebalance callbacks and the ``max.poll.interval.ms`` liveness check both depend on polls; without
        these a consumer full of slow handlers would hold up the whole group's rebalance, or be expelled.
        """
        await self._in_consumer_thread(self._idle_sync)

    def _idle_sync(self) -> None:
        if self._consumer is None:
            return
        self._commit(self._tracker.committable())
        paused = self._consumer.assignment()
        if paused:
            self._consumer.pause(paused)
        try:
            # Messages fetched before the pause may still come out: keep them for the next receive().
            self._held.extend(self._consumer.consume(100, 0))
        finally:
            assignment = self._consumer.assignment()  # a rebalance may have run inside consume()
            if assignment:
                self._consumer.resume(assignment)
        self._report_lag()

    async def ack(self, delivery: Delivery) -> None:
        partition, generation, offset, _ = delivery.token
        self._tracker.finished(partition, generation, offset)

    async def retry_later(self, delivery: Delivery, delay: float) -> None:
        raise NotImplementedError("Kafka messages are retried in-process")

    async def dead_letter(self, delivery: Delivery, reason: str, event_name: str | None, attempts: int) -> None:
        attributes = dead_letter_attributes(delivery, reason, event_name, self.destination, attempts)
        key = delivery.token[3]
        await self._producer_thread.run(self._produce_sync, delivery.body, key, attributes)
        await self.ack(delivery)

    def _produce_sync(self, body: bytes, key: bytes | None, attributes: dict[str, str]) -> None:
        errors: list[Any] = []
        self._producer.produce(
            self.dead_letter_topic,
            value=body,
            key=key,
            headers=list(attributes.items()),
            on_delivery=lambda err, _msg: errors.append(err),
        )
        # Dead letters are rare: waiting for this one acknowledgement (acks=all) is simpler than batching.
        remaining = self._producer.flush(30)
        if remaining or not errors or errors[0] is not None:
            raise RuntimeError(f"dead letter not confirmed by {self.dead_letter_topic}: {errors or 'timeout'}")

    async def release(self, delivery: Delivery) -> None:
        return None  # never committed: the partition's next owner (or our next start) reads it again

    async def close(self) -> None:
        try:
            await self._in_consumer_thread(self._close_sync)
        finally:
            self._consumer_thread.shutdown()
            self._producer_thread.shutdown()

    def _close_sync(self) -> None:
        if self._consumer is not None:
            self._commit(self._tracker.committable())
            # close() leaves the group at once, so the partitions move to other members without waiting for
            # the session timeout (revoke callback commits again if anything finished meanwhile).
            self._consumer.close()
            self._consumer = None
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None


__all__ = ["KafkaSource", "headers_to_attributes"]
