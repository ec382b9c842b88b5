"""``ForwardHandler``: the event handler every broker forwarder is built on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._event_meta import stable_id
from .._report import report_failure
from ..codec import encode_event
from ..handlers.base import WHOLE, Answers, BaseEventHandler, describe
from ..typing import Event
from ._admission import Admission
from ._deadletters import DeadLetterCallback
from ._direct import DirectSubmit
from ._encoding import KeyFunction, encode_events
from ._handover import Flushes, Handovers
from ._inflight import RoundsInFlight
from ._memory import MemoryStore
from ._options import DeliveryKwargs, DeliveryOptions, split_options
from ._ordering import KeyOrder
from ._outage import Outage
from ._rounds import send_now
from ._spool_writer import SpoolStore, acquire
from ._store import Entry, PendingStore
from ._transport import Transport, call_submitter

if TYPE_CHECKING:
    from typing_extensions import Unpack

logger = logging.getLogger("fastapi_events.delivery")

# How long deliver() with answers waits for the transport to open before the round counts as a broker outage.
_OPEN_WAIT = 2.0


@dataclass(frozen=True, slots=True)
class ForwarderStats:
    accepted: int  # events handed to the forwarder
    delivered: int  # acknowledged by the broker
    retried: int  # entries scheduled for another attempt (outages included)
    dead_lettered: int
    dropped: int  # lost: memory queue full, spool unusable, or left in memory at shutdown
    queued: int  # waiting for delivery now
    waiting: int = 0  # events of dispatching requests waiting for room in the full in-memory queue (backpressure)


class ForwardHandler(Admission, DirectSubmit, BaseEventHandler):
    """Forwards events to a broker :class:`~fastapi_events.delivery.Transport`; never loses one silently.

    ``handle_many`` encodes the events and hands them over before it returns - so before the request that
    dispatched them returns: with ``spool_path`` it returns once they are written to the spool file (durable: a
    later process with the same path delivers what this one could not); without, once the broker accepted them,
    for at most ``flush_timeout`` seconds and not at all while the broker is known to be unreachable (waiting
    would not deliver them sooner), after which they wait in a bounded in-memory queue. When that queue is full,
    ``handle_many`` waits for room (backpressure: the dispatching request slows down, nothing is discarded);
    only while the broker is known to be down are events that find no room given up - logged, counted in
    ``stats.dropped`` and passed to ``on_dead_letter``. A background sender task
    batches the events of all concurrent requests and delivers them; failed entries are retried per ``retry``;
    after the budget or on a permanent error an event becomes a dead letter (spool table and/or
    ``on_dead_letter``, always logged at ERROR). A broker outage (or a missing destination) never spends that
    budget: the sender retries every ``reconnect_max_delay`` seconds at most and logs at least every
    ``outage_log_interval`` seconds until it delivers again. With a spool, the sender also relays entries added
    by other tools (``spool replay``).
    """

    def __init__(
        self, transport: Transport, options: DeliveryOptions | None = None, **kwargs: Unpack[DeliveryKwargs]
    ) -> None:
        # The options are declared, defaulted and validated in options.py only (every forwarder shares them).
        if options is None:
            options = split_options(type(self).__name__, kwargs)[0]
        elif kwargs:
            raise TypeError("pass the delivery options either as DeliveryOptions or as keywords, not both")
        self.transport = transport
        self.options = options
        self.serializer = options.serializer
        self.spool_path = os.fspath(options.spool_path) if options.spool_path is not None else None
        self.retry = options.retry_policy
        self.max_queue_size = options.max_queue_size
        self.on_dead_letter = options.on_dead_letter
        self.key = options.key
        self.id_generator = options.new_id
        self.flush_timeout = options.flush_timeout
        self.relay_interval = options.relay_interval
        self._outage = Outage(
            repr(self), transport.destination, options.reconnect_max_delay, options.outage_log_interval
        )
        self._window = max(1, min(transport.max_batch_count * 10, 5000))
        self._store: PendingStore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._transport_open = False
        self._open_waited = False  # deliver() with answers waited for the transport to open once already
        self._transport_touched = False  # open() was attempted: close() must release what it set up
        self._outstanding: set[str] = set()
        self._flushes = Flushes()
        self._handovers = Handovers()
        self._stopping = False
        self._timeout_logged_at = 0.0
        self._order = KeyOrder()
        self._rounds = RoundsInFlight(lambda: self._wake.set())
        self._resume_at = 0.0  # time.monotonic() before which the sender pauses (the broker is down)
        self._lasting_loop: asyncio.AbstractEventLoop | None = None  # the loop startup() ran on
        self._counts = {"accepted": 0, "delivered": 0, "retried": 0, "dead_lettered": 0, "dropped": 0}
        self._unsubmitted = 0
        self._submit = None
        self._max_batch_count = transport.max_batch_count
        self._max_batch_bytes = transport.max_batch_bytes

    @property
    def outage_log_interval(self) -> float:
        """While the broker cannot be reached, the forwarder logs a warning at least this often (seconds)."""
        return self._outage.log_interval

    @outage_log_interval.setter
    def outage_log_interval(self, seconds: float) -> None:
        self._outage.log_interval = seconds

    @property
    def stats(self) -> ForwarderStats:
        store = self._store
        queued = store.queued() if store is not None else 0
        waiting = store.waiting_for_room if isinstance(store, MemoryStore) else 0
        return ForwarderStats(queued=queued, waiting=waiting, **self._counts)

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def startup(self) -> None:
        await self._ensure_started()
        # A loop that ran the app's lifespan outlives its requests: a buffering SDK may finish their delivery
        # after they returned. Without it (TestClient without ``with``: a loop per request) requests wait for
        # the broker's acknowledgement, since their loop - and the delivery reports it would run - ends with them.
        self._lasting_loop = self._loop

    async def _ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A new event loop (a second TestClient lifespan, or TestClient without ``with``: a loop per request):
            # tasks and futures of the old one are gone. Transports work from any loop (see Transport).
            self._loop, self._starting, self._sender = loop, None, None
            self._wake = asyncio.Event()
            self._flushes = Flushes()
            self._handovers = Handovers()
            self._rounds.forget()
            self._unsubmitted = 0
            if isinstance(self._store, MemoryStore):
                self._store.reset_in_flight()
        if self._starting is None:
            self._starting = loop.create_task(self._start())
        starting = self._starting
        try:
            await asyncio.shield(starting)
        except Exception:
            if self._starting is starting:
                self._starting = None  # let the next event try again
            raise

    async def _start(self) -> None:
        if self._store is None:
            if self.spool_path is not None:
                store = SpoolStore(await acquire(self.spool_path), self.transport.destination)
                waiting = await store.load_count()
                if waiting:
                    logger.info(
                        "spool %s: %d event(s) for %s left by a previous run",
                        self.spool_path,
                        waiting,
                        store.destination,
                    )
                self._store = store
            else:
                self._store = MemoryStore(self.max_queue_size, self.transport.destination)
                # A buffering SDK takes a request's events on the request's call (see _direct.py), unless its
                # transport says batching them across requests costs less.
                self._submit = call_submitter(self.transport)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._run_sender(), name=f"forward:{self}")

    async def flush(self, timeout: float | None = None) -> None:
        if self._loop is not asyncio.get_running_loop():
            return
        waiting = set(self._outstanding)
        if isinstance(self._store, MemoryStore):
            waiting.update(self._store.direct_ids())
        if not waiting:
            return
        timeout = self.flush_timeout if timeout is None else timeout
        done = self._flushes.register(waiting)
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout)
        except asyncio.TimeoutError:
            where = f"kept in spool {self.spool_path}" if self.spool_path else "still in memory"
            logger.warning(
                "%s: flush timed out after %.1fs with %d event(s) not delivered (%s)",
                self,
                timeout,
                self._queued() if self._store is not None and not self._store.durable else len(self._outstanding),
                where,
            )
        finally:
            self._flushes.forget(done)

    async def shutdown(self, timeout: float | None = None) -> None:
        if self._store is None:
            return
        await self.flush(timeout)
        self._stopping = True
        for task in (self._sender, self._starting):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._sender = self._starting = None
        self._unsubmitted = 0
        self._submit = None
        store, self._store = self._store, None
        if isinstance(store, MemoryStore):
            self._counts["dropped"] += store.report_lost()
        self._outstanding.clear()
        if self._transport_touched:
            self._transport_open = self._transport_touched = False
            try:
                await self.transport.close()
            except Exception:
                logger.exception("%s: closing the transport failed", self)
        self._stopping = False
        await store.close()

    # -- accepting events ----------------------------------------------------------------------------------
    async def handle(self, event: Event) -> None:
        await self.handle_many([event])

    async def handle_many(self, events: Iterable[Event]) -> None:
        events = list(events)
        if not events:
            return
        self._counts["accepted"] += len(events)
        if not self._started_here():
            try:
                await self._ensure_started()
            except Exception as exc:
                self._counts["dropped"] += len(events)
                for event in events:
                    report_failure(event, self, exc)
                return
        assert self._store is not None
        try:
            encoded = encode_events(
                events, self.transport, serializer=self.serializer, id_generator=self.id_generator, key=self.key
            )
        except Exception as exc:  # a failing id_generator: nothing of this batch can be accepted
            self._counts["dropped"] += len(events)
            for event in events:
                report_failure(event, self, exc)
            return
        messages, sources, dead = encoded.messages, encoded.sources, encoded.dead
        handed: asyncio.Future[bool | None] | None = None
        ids: list[str] = []
        if messages:
            rest = self._submit_direct(messages)
            if rest is not None:  # the SDK holds them, but for ``rest``
                ids = [message.id for message in rest]
                if ids:
                    handed = self._handovers.register(ids)
            else:
                ids = [message.id for message in messages]
                # Registered before they are stored: room may free piece by piece while this call waits for it,
                # and the sender can deliver the first pieces before the call resumes.
                self._outstanding.update(ids)
                if not self._store.durable:
                    handed = self._handovers.register(ids)
                try:
                    dropped = await self._store_all(messages)
                except Exception as exc:  # e.g. disk full: these events are lost, say so for each
                    self._counts["dropped"] += len(messages)
                    for event in sources:
                        report_failure(event, self, exc)
                    dropped = messages
                if dropped:
                    self._resolved(message.id for message in dropped)
                    await self._drop(dropped)
                self._wake.set()
        if dead:
            await self._dead_letter(dead, stored=False)
        if handed is not None:
            if self._outage.active:
                self._handovers.forget(ids)
            else:
                await self._hand_over(handed, ids)

    def _started_here(self) -> bool:
        """Started on the running loop, successfully (``_ensure_started`` would return at once, at more cost)."""
        starting = self._starting
        return (
            starting is not None
            and starting.done()
            and self._loop is asyncio.get_running_loop()
            and not starting.cancelled()
            and starting.exception() is None
        )

    async def deliver(self, events: Sequence[Event], answers: Answers | None = None) -> None:
        """Without ``answers``: :meth:`handle_many`. With them, the caller keeps the durable copy (the outbox's
        row), so the events go straight through the transport in one send round - no queue, no spool, no retry
        here - and each answers delivered, retry (``outage`` when the broker could not be reached) or dead."""
        if answers is None:
            await self.handle_many(events)
            return
        todo = [index for index in range(len(events)) if answers.wants(index)]
        if not todo:
            return
        try:
            await self._opened()
        except Exception as exc:
            for index in todo:
                answers.retry(index, describe(exc), outage=True)
            return
        encoded = encode_events(
            [events[index] for index in todo],
            self.transport,
            serializer=self.serializer or _stored_body,
            id_generator=self.id_generator,
            key=self.key,
        )
        index_of = {stable_id(events[index]): index for index in todo}
        for dead in encoded.dead:
            answers.dead(index_of[dead.message.id], dead.reason)
        entries = [Entry(index_of[message.id], message) for message in encoded.messages]
        for entry, answer in await send_now(self.transport, entries):
            answers.by_event[entry.seq][WHOLE] = answer

    async def _opened(self) -> None:
        """Wait (once, briefly) for the sender task to open the transport; afterwards fail at once while it is
        not open, rather than hold up a request's ASGI call during a broker outage."""
        if self._transport_open:
            return
        if self._open_waited:
            raise ConnectionError(f"{self!r}: transport not open (broker unreachable)")
        self._open_waited = True
        await self.startup()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _OPEN_WAIT
        while not self._transport_open:
            if loop.time() >= deadline:
                raise ConnectionError(f"{self!r}: transport not open (broker unreachable?)")
            await asyncio.sleep(0.02)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transport.system}:{self.transport.destination})"


def _stored_body(event: Event) -> str | bytes:
    # An event read back from a durable store (the outbox row) carries its wire body: send it as it is.
    body = getattr(event, "body", None)
    return body if isinstance(body, str) else encode_event(event)


__all__ = ["DeadLetterCallback", "ForwardHandler", "ForwarderStats", "KeyFunction"]
