"""Kafka :class:`~fastapi_events.delivery.Transport` on confluent-kafka's idempotent producer (``acks=all``).

An entry counts as delivered only when its delivery report says so. librdkafka runs those reports inside
``poll``/``flush``; the transport polls on the event loop that submitted them - after each submit, as a
hand-written producer does, and on a short timer while reports are due - so a report settles its batch where the
batch's future lives, without a thread of its own or a hand-off per report. The event loop never blocks on the
producer: ``produce`` only appends to librdkafka's queue, and what can block (a full queue, purging, closing) runs
in a worker thread, whose reports are passed to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from ...concurrency import BlockingExecutor
from ...delivery import DELIVERED, EntryResult, OutboundMessage, Outcome
from ...errors import ConfigurationError
from ._admin import ensure_topics
from ._reports import OK, TOPIC_MISSING, UNREACHABLE, Report, Reports, classify, failed

logger = logging.getLogger("fastapi_events.kafka")

_ALL_DOWN_GRACE = 1.0  # seconds "all brokers down" must stand, without a delivery, before sends fail
# Overridable defaults: reconnect within a second of the broker's return (librdkafka's default backs off to 10 s).
# A broker that drops packets instead of refusing counts as down after 10 s, not librdkafka's 30.
_DEFAULTS = {"linger.ms": 5, "reconnect.backoff.max.ms": 1000, "socket.connection.setup.timeout.ms": 10_000}
_RECREATE_AFTER = 3  # batches in a row that reached no broker
_HEADER_OVERHEAD = 64  # record framing, varints, timestamps: a safe upper bound per record
_POLL_INTERVAL = 0.005  # seconds between polls on the loop while reports are due (librdkafka lingers 5 ms)
_CHECK_INTERVAL = 0.25  # seconds between looks for reports overdue or a cluster gone


class KafkaUnreachableError(ConnectionError):
    """No entry of a batch reached the cluster before the delivery timeout."""


class KafkaTransport:
    """Produces delivery-layer batches to ``topic``; ``key`` of a message is the Kafka key (per-key order)."""

    system = "kafka"
    max_batch_count = 1000
    max_batch_bytes = 32 * 1024 * 1024

    def __init__(
        self,
        topic: str,
        bootstrap_servers: str,
        *,
        config: Mapping[str, Any] | None = None,
        delivery_timeout: float = 30.0,
        create_topic: bool = True,
    ) -> None:
        self.destination = topic
        self.create_topic = create_topic
        self.config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            **_DEFAULTS,
            "message.timeout.ms": int(delivery_timeout * 1000),
            **(config or {}),
            # Not overridable: without them "delivered" would not mean "on every in-sync replica, once".
            "acks": "all",
            "enable.idempotence": True,
        }
        self._user_error_cb = self.config.pop("error_cb", None)
        validate_producer_config(self.config)
        self.max_message_bytes = int(self.config.get("message.max.bytes", 1_000_000)) - _HEADER_OVERHEAD
        # Reports for messages still in librdkafka come later than this only if the client is wedged.
        self._report_timeout = int(self.config["message.timeout.ms"]) / 1000 + 15
        self._producer: Any = None
        self._thread = BlockingExecutor("kafka-transport")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[Reports] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._checked_at = 0.0
        self._fatal: str | None = None
        self._unreachable_rounds = 0
        self._topic_missing = False
        self._all_down_since: float | None = None  # librdkafka reported every broker down, no report since
        self._all_down = ""
        self._generation = 0  # of the producer: callbacks of a replaced one must not touch its successor

    def message_size(self, message: OutboundMessage) -> int:
        attributes = message.attributes
        headers = sum(map(len, attributes)) + sum(map(len, attributes.values()))  # no Python frame per header
        return len(message.body) + len((message.key or "").encode()) + headers + _HEADER_OVERHEAD

    async def _in_thread(self, func: Any, *args: Any) -> Any:
        return await self._thread.run(func, *args)

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._in_thread(self._open_sync)

    def _open_sync(self) -> None:
        if self.create_topic:
            ensure_topics(self.config, [self.destination])
        self._start_producer()

    def _start_producer(self) -> None:
        self._generation += 1
        on_error = functools.partial(self._on_error, self._generation)
        self._producer = Producer({**self.config, "error_cb": on_error})
        self._fatal = None
        self._all_down_since = None

    def _on_error(self, generation: int, error: KafkaError) -> None:
        if generation == self._generation:
            if error.code() == KafkaError._ALL_BROKERS_DOWN:
                # librdkafka says so the moment it loses the last broker; the delivery reports would only say so
                # after message.timeout.ms. Unless a report proves otherwise within a grace period (librdkafka
                # also says so in passing while it swaps its bootstrap connection), the sends waiting now fail
                # (see send_batch) and are resent through a fresh producer, which reconnects at once.
                self._all_down = f"{error.name()}: {error.str()}"
                if self._all_down_since is None:
                    self._all_down_since = time.monotonic()
            elif error.fatal():
                self._on_fatal(error.str())
        if self._user_error_cb is not None:
            self._user_error_cb(error)

    def _on_fatal(self, reason: str) -> None:
        # A fatal error (e.g. the broker forgot our producer id) kills an idempotent producer for good; the
        # messages it still holds get no report. Fail them as "unreachable" and start a fresh producer.
        if self._fatal is None:
            self._fatal = reason
            logger.warning("Kafka producer for %s failed fatally (%s); recreating it", self.destination, reason)
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(self._fail_pending, self._fatal or reason)

    def _fail_pending(self, reason: str) -> None:
        if self._pending and self._producer is not None:
            # The delivery layer resends what is failed here: the producer must not send its copies once a broker
            # is back (before the next send replaces it). Non-blocking: librdkafka drops them in its own thread.
            with contextlib.suppress(Exception):
                self._producer.purge(blocking=False)
        for reports in list(self._pending):
            reports.fail_rest(failed(f"producer failed: {reason}"))

    def _recreate_sync(self) -> None:
        old = self._producer
        try:
            old.purge()  # what it still holds was failed already; the delivery layer resends it
            old.flush(0)
        except Exception:
            logger.debug("purging the old Kafka producer failed", exc_info=True)
        if self.create_topic and self._topic_missing:
            # The cluster lost the topic (deleted, storage wiped): create it again, as open() did.
            with contextlib.suppress(Exception):  # still down: the next send says so
                ensure_topics(self.config, [self.destination], timeout=2.0)
        self._start_producer()

    def submit(self, batch: Sequence[OutboundMessage]) -> tuple[int, asyncio.Future[Sequence[EntryResult]]]:
        """Hand ``batch`` to librdkafka on the event loop (``produce`` only appends to its queue); returns how
        many messages it holds and a future of their results, settled by the delivery reports."""
        producer = self._producer
        if producer is None:
            raise RuntimeError("KafkaTransport is not open")
        if self._fatal is not None:  # a fresh producer first: purging and flushing the old one blocks
            return 0, asyncio.ensure_future(self._recreate_and_send(batch))
        # The loop of this send: an app running a loop per request (TestClient without ``with``) moves on.
        loop = self._loop = asyncio.get_running_loop()
        if not batch:
            done: asyncio.Future[Sequence[EntryResult]] = loop.create_future()
            done.set_result([])
            return 0, done
        reports = Reports(loop, len(batch), time.monotonic() + self._report_timeout, self._complete)
        self._pending.add(reports)
        produce, topic, on_report, partial = producer.produce, self.destination, self._on_report, functools.partial
        count = 0
        for message in batch:
            try:
                # Positional, as confluent-kafka's C code reads them (topic, value, key, partition -1 for the
                # partitioner's choice, callback, its alias on_delivery, timestamp 0 for now, headers): keywords
                # cost a fifth of the call. test_forwarder checks keys, headers and timestamps on the wire.
                # Headers straight from the attributes: confluent-kafka takes a dict of str values as it is.
                on_delivery = partial(on_report, reports, count)
                produce(topic, message.body, message.key, -1, on_delivery, None, 0, message.attributes)
            except BufferError:  # librdkafka's queue is full: the rest waits for room in the worker thread
                break
            except KafkaException as exc:
                reports.settle(count, self._refused(exc))
            count += 1
        self._poll(producer)  # the reports of earlier batches, as a hand-written producer serves them
        self._keep_polling(loop)
        if count < len(batch):
            return count, asyncio.ensure_future(self._produce_rest(batch, reports, count))
        return count, reports.future

    async def send_batch(self, batch: Sequence[OutboundMessage]) -> Sequence[EntryResult]:
        return await self.submit(batch)[1]

    async def _recreate_and_send(self, batch: Sequence[OutboundMessage]) -> Sequence[EntryResult]:
        await self._in_thread(self._recreate_sync)
        return await self.send_batch(batch)

    async def _produce_rest(
        self, batch: Sequence[OutboundMessage], reports: Reports, start: int
    ) -> Sequence[EntryResult]:
        await self._in_thread(self._produce_blocking, batch, reports, start)
        if self._fatal is not None:  # the producer failed before these were queued
            self._fail_pending(self._fatal)
        return await reports.future

    def _complete(self, reports: Reports) -> None:
        """Every report of a batch is in: its results, or the error saying the broker could not be reached."""
        self._pending.discard(reports)
        future = reports.future
        if future.done() or reports.loop.is_closed():
            return
        settled = reports.settled
        if settled.count(OK) == len(settled):
            self._unreachable_rounds = 0
            self._topic_missing = False
            future.set_result([DELIVERED] * len(settled))
            return
        if settled and all(code in UNREACHABLE for _, code in settled):
            self._topic_missing = any(code in TOPIC_MISSING for _, code in settled)
            if self._topic_missing:
                self._fatal = self._fatal or "topic missing"
            self._unreachable_rounds += 1
            if self._unreachable_rounds >= _RECREATE_AFTER:
                # A client that stays cut off can hold stale state (metadata of a topic the cluster lost, a
                # producer id it forgot); a fresh one costs nothing during an outage and heals those cases.
                self._fatal = f"{self._unreachable_rounds} batches in a row timed out"
                self._unreachable_rounds = 0
            future.set_exception(KafkaUnreachableError(settled[0][0].reason))
            return
        self._unreachable_rounds = 0
        self._topic_missing = False
        future.set_result([result for result, _ in settled])

    def _poll(self, producer: Any) -> None:
        try:
            producer.poll(0)  # runs delivery reports and error callbacks, here
        except KafkaException as exc:
            self._on_fatal(f"{exc}")

    def _keep_polling(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None or self._timer_loop is not loop:
            self._timer_loop = loop
            self._timer = loop.call_later(_POLL_INTERVAL, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        """While reports are due: poll, and now and then fail what waits in vain (see ``_check``)."""
        if self._timer_loop is loop:
            self._timer = None
        if self._producer is not None:
            self._poll(self._producer)
        now = time.monotonic()
        if now - self._checked_at >= _CHECK_INTERVAL:
            self._checked_at = now
            self._check(now)
        if self._pending and not loop.is_closed() and self._timer is None:
            self._timer_loop = loop
            self._timer = loop.call_later(_POLL_INTERVAL, self._tick, loop)

    def _check(self, now: float) -> None:
        for reports in [r for r in self._pending if r.loop.is_closed()]:
            self._pending.discard(reports)  # nobody waits for them any more
        down_since = self._all_down_since
        if self._pending and down_since is not None and now - down_since >= _ALL_DOWN_GRACE:
            self._fatal = self._fatal or self._all_down  # the next send starts a fresh producer
            self._fail_pending(self._all_down)
        for reports in [r for r in self._pending if now >= r.deadline]:
            # librdkafka does not time out messages already sent to a broker that then vanished (an idempotent
            # producer cannot know whether they were written): start over with a new client.
            self._fatal = "no delivery report in time"
            reports.fail_rest(failed("no delivery report in time"))

    def _on_report(self, reports: Reports, index: int, error: KafkaError | None, _msg: Any) -> None:
        if error is None:
            self._all_down_since = None  # a broker answered after all
            report = OK
        elif error.fatal():
            self._on_fatal(error.str())
            report = failed(f"producer failed: {error.str()}")
        else:
            report = (classify(error), error.code())
        if threading.get_ident() != reports.thread:
            # Served by a worker thread (a full queue, purging, closing): settled on the batch's loop.
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                reports.loop.call_soon_threadsafe(reports.settle, index, report)
            return
        slots = reports.reports  # Reports.settle, inline: this runs once per message
        if slots[index] is None:
            slots[index] = report
            reports.left -= 1
            if not reports.left:
                self._complete(reports)

    def _refused(self, exc: KafkaException) -> Report:
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if error is not None and error.fatal():
            self._on_fatal(error.str())
            return failed(f"producer failed: {error.str()}")
        if error is not None:
            return (classify(error), None)
        return (EntryResult(Outcome.PERMANENT, f"{exc}"), None)

    def _produce_blocking(self, batch: Sequence[OutboundMessage], reports: Reports, start: int) -> None:
        """In the worker thread: append the rest of ``batch``, waiting for room in librdkafka's queue."""
        for index in range(start, len(batch)):
            message = batch[index]
            on_delivery = functools.partial(self._on_report, reports, index)
            while True:
                try:
                    self._producer.produce(
                        self.destination, message.body, message.key, headers=message.attributes, on_delivery=on_delivery
                    )
                    break
                except BufferError:
                    self._producer.poll(0.05)  # reports free room
                except KafkaException as exc:
                    with contextlib.suppress(RuntimeError):
                        reports.loop.call_soon_threadsafe(reports.settle, index, self._refused(exc))
                    break

    async def close(self) -> None:
        try:
            await self._in_thread(self._close_sync)
        finally:
            self._thread.shutdown()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _close_sync(self) -> None:
        if self._producer is None:
            return
        left = self._producer.flush(10)
        if left:
            logger.warning("%d message(s) for %s not confirmed at close", left, self.destination)
        self._producer = None


_probe_logger = logging.getLogger("fastapi_events.kafka.config_check")
_probe_logger.addHandler(logging.NullHandler())
_probe_logger.propagate = False


def validate_producer_config(config: Mapping[str, Any]) -> None:
    """Have librdkafka check every setting now: a misspelt or invalid one must fail at construction, not leave a
    producer that never starts. Builds (and drops) a producer without brokers: a few milliseconds, no I/O."""
    probe = {key: value for key, value in config.items() if key != "bootstrap.servers"}
    probe["logger"] = _probe_logger  # no "no bootstrap.servers" warning
    try:
        Producer(probe)
    except KafkaException as exc:
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else exc
        detail = error.str() if isinstance(error, KafkaError) else str(error)
        raise ConfigurationError(f"Kafka producer setting rejected by librdkafka: {detail}") from exc


__all__ = ["KafkaTransport", "KafkaUnreachableError", "classify", "validate_producer_config"]
