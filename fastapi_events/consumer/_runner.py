"""``Consumer``: feeds broker messages to a ``LocalHandler`` and acknowledges only what was handled.

At-least-once: a message is acknowledged after every matching handler succeeded, or after it was
dead-lettered. Anything else (a crash, a shutdown in the middle of a retry) leaves it unacknowledged so that
the broker delivers it again - handlers must tolerate duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import _hooks
from .._event_meta import received
from ..codec import ATTR_EVENT_NAME, decode_event
from ..delivery import RetryPolicy
from ..errors import ConfigurationError, HandlerTimeoutError, MalformedMessageError
from ..handlers.base import deliver_strict
from ..handlers.local import LocalHandler
from ..typing import Event
from ._source import MAX_REASON_CHARS, Delivery, IdlingSource, Source
from ._timeout import HandlerDeadline

logger = logging.getLogger("fastapi_events.consumer")

#: ``deserializer(body, attributes) -> (name, payload)``; raising ``MalformedMessageError`` dead-letters.
Deserializer = Callable[[bytes, Mapping[str, str]], Event]

# Handler failures are usually bugs or a dependency being down: a few spaced-out attempts ride out a blip
# without holding a message (and, for Kafka, its partition) for long.
DEFAULT_RETRY = RetryPolicy(max_attempts=5, initial_delay=0.5, max_delay=30.0)


def default_deserializer(body: bytes, attributes: Mapping[str, str]) -> Event:
    return decode_event(body)


@dataclass(slots=True)
class ConsumerStats:
    received: int = 0
    handled: int = 0  # acknowledged after every matching handler succeeded
    retried: int = 0  # failed attempts followed by another attempt
    dead_lettered: int = 0
    released: int = 0  # left unacknowledged at shutdown, for redelivery
    timed_out: int = 0  # attempts abandoned after ``handler_timeout`` (each also counts as retried/dead-lettered)
    reasons: dict[str, int] = field(default_factory=dict)  # dead letters by kind


class Consumer:
    """Runs ``handler`` (a :class:`~fastapi_events.handlers.local.LocalHandler`) for messages of ``source``.

    ``concurrency`` bounds the handlers running at once; messages sharing a lane (Kafka: same partition and
    key) are handled one after the other in arrival order. A failing message is retried with ``retry``'s
    backoff, then dead-lettered with the reason. Malformed messages and, unless ``ignore_unknown``, events no
    function is registered for are dead-lettered at once. :meth:`stop` (SIGTERM in the CLI) stops receiving,
    lets running handlers finish for up to ``shutdown_timeout`` seconds, releases the rest and commits.

    ``handler_timeout`` (seconds, ``None``: no limit) bounds one attempt: handlers still running then are
    treated as failed - coroutine handlers are cancelled, a sync handler cannot be interrupted and is left
    running in its worker thread (logged) - and the message is retried or dead-lettered like any failure.
    The source keeps the message's lease (visibility, ack deadline, pending-entry idle time) only while this
    process holds it, so a timed-out attempt's lease lapses with the attempt.
    """

    def __init__(
        self,
        source: Source,
        handler: LocalHandler,
        *,
        concurrency: int = 16,
        retry: RetryPolicy | None = None,
        ignore_unknown: bool = False,
        shutdown_timeout: float = 30.0,
        deserializer: Deserializer | None = None,
        prefetch: int | None = None,
        handler_timeout: float | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if handler_timeout is not None and not handler_timeout > 0:
            raise ConfigurationError("handler_timeout must be a number of seconds > 0 (or None)")
        self.source = source
        self.handler = handler
        self.concurrency = concurrency
        self.retry = retry or DEFAULT_RETRY
        self.ignore_unknown = ignore_unknown
        self.shutdown_timeout = shutdown_timeout
        self.deserializer = deserializer or default_deserializer
        self.handler_timeout = handler_timeout
        # Prefetching a little keeps handlers busy while the next receive is on the wire.
        self.prefetch = prefetch if prefetch is not None else concurrency * 2
        self.stats = ConsumerStats()
        self._stopping = asyncio.Event()
        self._room = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._outstanding = 0
        self._lanes: dict[Hashable, deque[Delivery]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._deadline = HandlerDeadline(handler, handler_timeout or 0.0)

    def stop(self) -> None:
        """Ask :meth:`run` to shut down gracefully (safe to call more than once, from a signal handler)."""
        self._stopping.set()

    def abort(self) -> None:
        """Stop without waiting: cancel running handlers (their messages stay unacknowledged)."""
        self._stopping.set()
        for task in list(self._tasks):
            task.cancel()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> ConsumerStats:
        """Consume until :meth:`stop`; returns the statistics once everything was committed and closed."""
        try:
            if not await self._open():
                return self.stats
            logger.info(
                "consuming %s %s (concurrency %d)", self.source.system, self.source.destination, self.concurrency
            )
            await self._receive_loop()
        finally:
            await self._drain()
            try:
                await self.source.close()
            except Exception:
                logger.exception("closing %s failed", self.source.destination)
        logger.info("stopped consuming %s: %s", self.source.destination, self.stats)
        return self.stats

    async def _open(self) -> bool:
        """Open the source, retrying with backoff: a broker that is not up yet must not kill the consumer."""
        failures = 0
        while not self._stopping.is_set():
            try:
                await self.source.open()
                return True
            except Exception as exc:
                failures += 1
                delay = self.retry.backoff_ceiling(failures)
                logger.warning(
                    "cannot open %s %s (%s: %s); retrying in %.1fs",
                    self.source.system,
                    self.source.destination,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await self._sleep(delay)
        return False

    # -- receiving -----------------------------------------------------------------------------------------
    async def _receive_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            room = self.prefetch - self._outstanding
            if room <= 0:
                self._room.clear()
                # Bounded so that a stop request is noticed even while every slot is busy.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._room.wait(), 0.5)
                if not self._room.is_set():
                    await self._idle()
                continue
            try:
                deliveries = await self.source.receive(room)
            except Exception as exc:  # broker unreachable: keep trying, a consumer must outlive an outage
                failures += 1
                delay = self.retry.backoff_ceiling(failures)
                logger.warning("receiving from %s failed (%s); retrying in %.1fs", self.source.destination, exc, delay)
                await self._sleep(delay)
                continue
            failures = 0
            for delivery in deliveries:
                self._dispatch(delivery)

    async def _idle(self) -> None:
        if not isinstance(self.source, IdlingSource):
            return
        try:
            await self.source.idle()
        except Exception as exc:
            logger.warning("keeping %s alive failed: %s", self.source.destination, exc)

    async def _sleep(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less when a stop is requested meanwhile."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    def _dispatch(self, delivery: Delivery) -> None:
        self.stats.received += 1
        self._outstanding += 1
        if delivery.lane is None:
            self._spawn(self._run_one(delivery))
            return
        lane = self._lanes.get(delivery.lane)
        if lane is not None:
            lane.append(delivery)  # its worker is running and picks this up in order
            return
        self._lanes[delivery.lane] = deque([delivery])
        self._spawn(self._run_lane(delivery.lane))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_lane(self, lane_id: Hashable) -> None:
        lane = self._lanes[lane_id]
        try:
            while lane:
                # The deque stays registered meanwhile, so deliveries for this lane keep queueing behind.
                await self._run_one(lane.popleft())
        finally:
            del self._lanes[lane_id]
            for left in lane:  # only after a cancellation: those were never started
                await self._release(left, finished=True)

    async def _run_one(self, delivery: Delivery) -> None:
        try:
            if self._stopping.is_set():
                await self._release(delivery)
                return
            async with self._slots:
                await self._process(delivery)
        finally:
            self._outstanding -= 1
            self._room.set()

    # -- handling ------------------------------------------------------------------------------------------
    async def _process(self, delivery: Delivery) -> None:
        # One span per message (when OpenTelemetry is on), joined to the dispatching request's trace through
        # the propagation keys in the attributes; handlers run inside it.
        attributes = delivery.attributes
        source = self.source
        event_name = attributes.get(ATTR_EVENT_NAME, "")
        with _hooks.consume(source.system, source.destination, delivery.message_id, event_name, attributes):
            await self._process_message(delivery)

    async def _process_message(self, delivery: Delivery) -> None:
        try:
            event = self.deserializer(delivery.body, delivery.attributes)
        except MalformedMessageError as exc:
            await self._dead_letter(delivery, f"malformed message: {exc.reason}", None, delivery.attempt, "malformed")
            return
        except Exception as exc:
            reason = f"deserializer failed: {type(exc).__name__}: {exc}"
            await self._dead_letter(delivery, reason, None, delivery.attempt, "malformed")
            return
        name = str(event[0])
        attempt = delivery.attempt
        # Handlers see the producer's event id and the attempt number (``Depends(event_meta)``).
        identified = received(event, delivery.attributes, delivery.message_id, attempt)
        while True:
            try:
                identified.attempt = attempt  # the same event object on every attempt, as observers expect
                matched = await self._handle(identified, delivery)
            except Exception as exc:
                error = str(exc) if str(exc) else type(exc).__name__
                if self.retry.exhausted(attempt, None, 0.0):
                    reason = f"handler failed after {attempt} attempt(s): {error}"
                    kind = "handler_timeout" if isinstance(exc, HandlerTimeoutError) else "handler_failed"
                    await self._dead_letter(delivery, reason, name, attempt, kind)
                    return
                delay = self.retry.delay(attempt)
                self.stats.retried += 1
                logger.warning(
                    "event %r (message %s) failed on attempt %d, retrying in %.2fs: %s",
                    name,
                    delivery.message_id,
                    attempt,
                    delay,
                    error,
                )
                if self.source.redelivers:
                    await self._hand_back(delivery, delay)
                    return
                await self._sleep(delay)
                if self._stopping.is_set():
                    await self._release(delivery)
                    return
                attempt += 1
                continue
            if matched == 0 and not self.ignore_unknown:
                reason = f"unknown event: no handler registered for {name!r}"
                await self._dead_letter(delivery, reason, name, attempt, "unknown")
                return
            try:
                await self.source.ack(delivery)
            except Exception as exc:
                # Handled but not acknowledged: the broker delivers it again (at least once, never lost).
                logger.error(
                    "acknowledging message %s failed (%s: %s); it will be delivered again",
                    delivery.message_id,
                    type(exc).__name__,
                    exc,
                )
                return
            self.stats.handled += 1
            return

    async def _handle(self, event: Event, delivery: Delivery) -> int:
        if self.handler_timeout is None:
            return await deliver_strict(self.handler, event)
        try:
            return await self._deadline.run(event, delivery.message_id)
        except HandlerTimeoutError:
            self.stats.timed_out += 1
            raise

    async def _hand_back(self, delivery: Delivery, delay: float) -> None:
        try:
            await self.source.retry_later(delivery, delay)
        except Exception:  # the broker redelivers it anyway once its lease/visibility runs out
            logger.exception("could not hand message %s back to %s", delivery.message_id, self.source.destination)

    async def _dead_letter(
        self, delivery: Delivery, reason: str, event_name: str | None, attempts: int, kind: str
    ) -> None:
        reason = reason[:MAX_REASON_CHARS]
        failures = 0
        while True:
            try:
                await self.source.dead_letter(delivery, reason, event_name, attempts)
                break
            except Exception as exc:
                # Acknowledging without a dead letter would lose the message: keep trying until shutdown.
                failures += 1
                if self._stopping.is_set():
                    logger.error("message %s not dead-lettered before shutdown: %s", delivery.message_id, exc)
                    await self._release(delivery)
                    return
                delay = self.retry.backoff_ceiling(failures)
                logger.warning(
                    "dead-lettering message %s failed (%s); retrying in %.1fs",
                    delivery.message_id,
                    exc,
                    delay,
                )
                await self._sleep(delay)
        self.stats.dead_lettered += 1
        self.stats.reasons[kind] = self.stats.reasons.get(kind, 0) + 1
        if _hooks.on_dead_letter:
            where = f"Consumer({self.source.system}:{self.source.destination})"
            _hooks.dead_lettered(event_name or "", where, reason)
        logger.error(
            "message %s from %s dead-lettered: %s",
            delivery.message_id,
            self.source.destination,
            reason,
            extra={"event_name": event_name, "message_id": delivery.message_id},
        )

    async def _release(self, delivery: Delivery, *, finished: bool = False) -> None:
        if finished:
            self._outstanding -= 1
        self.stats.released += 1
        try:
            await self.source.release(delivery)
        except Exception:
            logger.exception("releasing message %s failed", delivery.message_id)

    # -- shutdown ------------------------------------------------------------------------------------------
    async def _drain(self) -> None:
        self._stopping.set()
        if not self._tasks:
            return
        logger.info("waiting up to %.0fs for %d in-flight message(s)", self.shutdown_timeout, len(self._tasks))
        _, pending = await asyncio.wait(set(self._tasks), timeout=self.shutdown_timeout)
        if pending:
            logger.warning("%d handler(s) still running after %.0fs: cancelled", len(pending), self.shutdown_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


__all__ = ["DEFAULT_RETRY", "Consumer", "ConsumerStats", "Deserializer", "default_deserializer"]
