"""Kafka :class:`~fastapi_events.delivery.Transport` on confluent-kafka's idempotent producer (``acks=all``).

An entry counts as delivered only when its delivery report says so. librdkafka runs those reports inside
``poll``/``flush``; a poller thread of our own calls them, and each report resolves an asyncio future through
``call_soon_threadsafe`` - the event loop never blocks on the producer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from ...concurrency import BlockingExecutor, start_thread
from ...delivery import DELIVERED, EntryResult, OutboundMessage, Outcome
from ...errors import ConfigurationError
from ._admin import ensure_topics

logger = logging.getLogger("fastapi_events.kafka")

# Errors about the message or our rights: resending the same bytes can never succeed.
_PERMANENT = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError._INVALID_ARG,
    }
)
# Nothing reached the cluster, or the topic cannot be used (missing, not allowed): an outage, which must not use
# up the events' retry budget - the topic may be (re)created, the ACL fixed, a minute later.
_FATAL = -100_000  # not a librdkafka code: "the producer died", which is no fault of the message either
_UNREACHABLE = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._PURGE_QUEUE,
        KafkaError._PURGE_INFLIGHT,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        _FATAL,
    }
)
_ALL_DOWN_GRACE = 1.0  # seconds "all brokers down" must stand, without a delivery, before sends fail
_TOPIC_MISSING = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC})
# Overridable defaults: reconnect within a second of the broker's return (librdkafka's default backs off to 10 s).
# A broker that drops packets instead of refusing counts as down after 10 s, not librdkafka's 30.
_DEFAULTS = {"linger.ms": 5, "reconnect.backoff.max.ms": 1000, "socket.connection.setup.timeout.ms": 10_000}
_RECREATE_AFTER = 3  # batches in a row that reached no broker
_HEADER_OVERHEAD = 64  # record framing, varints, timestamps: a safe upper bound per record


# The entry's result and the librdkafka error code behind it (None: delivered or refused before sending).
_Report = tuple[EntryResult, "int | None"]
_OK: _Report = (DELIVERED, None)


def classify(error: KafkaError) -> EntryResult:
    reason = f"{error.name()}: {error.str()}"
    if error.code() in _PERMANENT:
        return EntryResult(Outcome.PERMANENT, reason)
    return EntryResult(Outcome.RETRY, reason)


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
        self._stop_polling = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[_Reports] = set()
        self._reports: collections.deque[tuple[_Reports, int, _Report]] = collections.deque()
        self._drain_scheduled = False
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
        self._stop_polling = threading.Event()
        start_thread("kafka-transport-poll", self._poll_forever, self._producer, self._stop_polling)

    def _poll_forever(self, producer: Any, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                producer.poll(0.1)  # runs delivery reports
            except KafkaException as exc:
                self._on_fatal(f"{exc}")
                return

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
        self._drain_reports()  # the reports that did come in count
        for reports in list(self._pending):
            reports.fail_rest((EntryResult(Outcome.RETRY, f"producer failed: {reason}"), _FATAL))

    def _recreate_sync(self) -> None:
        self._stop_polling.set()
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
        if self._producer is None:
            raise RuntimeError("KafkaTransport is not open")
        if self._fatal is not None:  # a fresh producer first: purging and flushing the old one blocks
            return 0, asyncio.ensure_future(self._recreate_and_send(batch))
        # The loop of this send: an app running a loop per request (TestClient without ``with``) moves on.
        loop = self._loop = asyncio.get_running_loop()
        reports = _Reports(loop, len(batch))
        self._pending.add(reports)
        count = 0
        while count < len(batch) and self._produce_one(batch[count], reports, count, blocking=False):
            count += 1
        return count, asyncio.ensure_future(self._results(batch, reports, count))

    async def send_batch(self, batch: Sequence[OutboundMessage]) -> Sequence[EntryResult]:
        return await self.submit(batch)[1]

    async def _recreate_and_send(self, batch: Sequence[OutboundMessage]) -> Sequence[EntryResult]:
        await self._in_thread(self._recreate_sync)
        return await self.send_batch(batch)

    async def _results(
        self, batch: Sequence[OutboundMessage], reports: _Reports, produced: int
    ) -> Sequence[EntryResult]:
        try:
            if produced < len(batch):  # librdkafka's queue was full: wait for room in the worker thread
                await self._in_thread(self._produce_rest, batch, reports, produced)
            if self._fatal is not None:  # the producer failed before these were queued
                self._fail_pending(self._fatal)
            if not await self._wait_for_reports(reports):
                # librdkafka does not time out messages already sent to a broker that then vanished (an
                # idempotent producer cannot know whether they were written): start over with a new client.
                self._fatal = "no delivery report in time"
                reports.fail_rest((EntryResult(Outcome.RETRY, "no delivery report in time"), _FATAL))
        finally:
            self._pending.discard(reports)
        settled = reports.settled
        if settled and all(code in _UNREACHABLE for _, code in settled):
            self._topic_missing = any(code in _TOPIC_MISSING for _, code in settled)
            if self._topic_missing:
                self._fatal = self._fatal or "topic missing"
            self._unreachable_rounds += 1
            if self._unreachable_rounds >= _RECREATE_AFTER:
                # A client that stays cut off can hold stale state (metadata of a topic the cluster lost, a
                # producer id it forgot); a fresh one costs nothing during an outage and heals those cases.
                self._fatal = f"{self._unreachable_rounds} batches in a row timed out"
                self._unreachable_rounds = 0
            raise KafkaUnreachableError(settled[0][0].reason)
        self._unreachable_rounds = 0
        self._topic_missing = False
        return [result for result, _ in settled]

    async def _wait_for_reports(self, reports: _Reports) -> bool:
        """True once every report is in; False when some are missing after the report timeout."""
        deadline = time.monotonic() + self._report_timeout
        while not reports.future.done() and time.monotonic() < deadline:
            await asyncio.wait((reports.future,), timeout=_ALL_DOWN_GRACE)
            down_since = self._all_down_since
            if (
                not reports.future.done()
                and down_since is not None
                and time.monotonic() - down_since >= _ALL_DOWN_GRACE
            ):
                self._fatal = self._fatal or self._all_down  # the next send starts a fresh producer
                self._fail_pending(self._all_down)
        return reports.future.done()

    def _on_report(self, reports: _Reports, index: int, error: KafkaError | None, _msg: Any) -> None:
        # In the poller thread: queue the report; the loop applies every report queued so far in one call.
        if error is None:
            self._all_down_since = None  # a broker answered after all
            report = _OK
        elif error.fatal():
            self._on_fatal(error.str())
            report = (EntryResult(Outcome.RETRY, f"producer failed: {error.str()}"), _FATAL)
        else:
            report = (classify(error), error.code())
        self._reports.append((reports, index, report))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                reports.loop.call_soon_threadsafe(self._drain_reports)

    def _drain_reports(self) -> None:
        self._drain_scheduled = False  # before draining: a report queued meanwhile schedules another call
        queued = self._reports
        while queued:
            reports, index, report = queued.popleft()
            reports.settle(index, report)

    def _produce_rest(self, batch: Sequence[OutboundMessage], reports: _Reports, start: int) -> None:
        for index in range(start, len(batch)):
            self._produce_one(batch[index], reports, index, blocking=True)

    def _produce_one(self, message: OutboundMessage, reports: _Reports, index: int, *, blocking: bool) -> bool:
        """Append one message to librdkafka's queue; False when the queue is full and ``blocking`` is not set."""
        headers = [(name, value.encode()) for name, value in message.attributes.items()]
        key = message.key.encode() if message.key is not None else None
        on_delivery = functools.partial(self._on_report, reports, index)
        while True:
            try:
                self._producer.produce(
                    self.destination, value=message.body, key=key, headers=headers, on_delivery=on_delivery
                )
                return True
            except BufferError:
                if not blocking:
                    return False
                # The local queue is full: wait for reports to free room (the poller runs them too).
                self._producer.poll(0.05)
            except KafkaException as exc:
                error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if error is not None and error.fatal():
                    self._on_fatal(error.str())
                    report: _Report = (EntryResult(Outcome.RETRY, f"producer failed: {error.str()}"), _FATAL)
                elif error is not None:
                    report = (classify(error), None)
                else:
                    report = (EntryResult(Outcome.PERMANENT, f"{exc}"), None)
                if blocking:
                    with contextlib.suppress(RuntimeError):
                        reports.loop.call_soon_threadsafe(reports.settle, index, report)
                else:
                    reports.settle(index, report)
                return True

    async def close(self) -> None:
        try:
            await self._in_thread(self._close_sync)
        finally:
            self._thread.shutdown()

    def _close_sync(self) -> None:
        if self._producer is None:
            return
        left = self._producer.flush(10)
        if left:
            logger.warning("%d message(s) for %s not confirmed at close", left, self.destination)
        self._stop_polling.set()
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


class _Reports:
    """The delivery reports of one submitted batch, settled on its event loop."""

    __slots__ = ("future", "left", "loop", "reports")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.reports: list[_Report | None] = [None] * count
        self.left = count
        if not count:
            self.future.set_result(None)

    @property
    def settled(self) -> list[_Report]:
        return [report for report in self.reports if report is not None]

    def settle(self, index: int, report: _Report) -> None:
        if self.reports[index] is None:
            self.reports[index] = report
            self.left -= 1
            if not self.left and not self.future.done():
                self.future.set_result(None)

    def fail_rest(self, report: _Report) -> None:
        for index, known in enumerate(self.reports):
            if known is None:
                self.settle(index, report)


__all__ = ["KafkaTransport", "KafkaUnreachableError", "classify", "validate_producer_config"]
