"""``ForwardHandler``: the event handler every broker forwarder is built on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .._report import report_failure
from ..codec import Serializer
from ..handlers.base import BaseEventHandler
from ..typing import Event
from .batching import split_batches
from .deadletters import DeadLetterCallback, report_dead_letters
from .encoding import KeyFunction, encode_events, new_event_id
from .memory import MemoryStore
from .ordering import KeyOrder
from .retry import RetryPolicy
from .rounds import classify, send_batches
from .spool_writer import SpoolStore, acquire
from .store import DeadLetter, Entry, PendingStore, Retry
from .transport import Transport

logger = logging.getLogger("fastapi_events.delivery")


@dataclass(frozen=True, slots=True)
class ForwarderStats:
    accepted: int  # events handed to the forwarder
    delivered: int  # acknowledged by the broker
    retried: int  # entries scheduled for another attempt (outages included)
    dead_lettered: int
    dropped: int  # lost: memory queue full, spool unusable, or left in memory at shutdown
    queued: int  # waiting for delivery now


class ForwardHandler(BaseEventHandler):
    """Forwards events to a broker :class:`~fastapi_events.delivery.Transport`; never loses one silently.

    ``handle_many`` encodes the events and stores them - in the spool file when ``spool_path`` is set
    (durable: a later process with the same path delivers what this one could not), else in a bounded
    in-memory queue - then returns. A background sender task batches and delivers them; failed entries are
    retried per ``retry``; after the budget or on a permanent error an event becomes a dead letter (spool
    table and/or ``on_dead_letter``, always logged at ERROR). With a spool, the sender also relays entries
    added by other tools (``spool replay``).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        serializer: Serializer | None = None,
        spool_path: str | os.PathLike[str] | None = None,
        retry: RetryPolicy | None = None,
        max_queue_size: int = 10_000,
        on_dead_letter: DeadLetterCallback | None = None,
        key: KeyFunction | None = None,
        id_generator: Callable[[], str] | None = None,
        flush_timeout: float = 30.0,
        relay_interval: float = 1.0,
        reconnect_max_delay: float = 5.0,
    ) -> None:
        self.transport = transport
        self.serializer = serializer
        self.spool_path = os.fspath(spool_path) if spool_path is not None else None
        self.retry = retry or RetryPolicy()
        self.max_queue_size = max_queue_size
        self.on_dead_letter = on_dead_letter
        self.key = key
        self.id_generator = id_generator or new_event_id
        self.flush_timeout = flush_timeout
        self.relay_interval = relay_interval
        self._outage_policy = RetryPolicy(None, None, 0.05, max(0.05, reconnect_max_delay))
        self._window = max(1, min(transport.max_batch_count * 10, 5000))
        self._store: PendingStore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._transport_open = False
        self._transport_touched = False  # open() was attempted: close() must release what it set up
        self._outstanding: set[str] = set()
        self._waiters: list[tuple[set[str], asyncio.Future[None]]] = []
        self._order = KeyOrder()
        self._counts = {"accepted": 0, "delivered": 0, "retried": 0, "dead_lettered": 0, "dropped": 0}

    @property
    def stats(self) -> ForwarderStats:
        queued = self._store.queued() if self._store is not None else 0
        return ForwarderStats(queued=queued, **self._counts)

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def startup(self) -> None:
        await self._ensure_started()

    async def _ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A new event loop (e.g. a second TestClient lifespan): tasks of the old one are gone.
            self._loop, self._starting, self._sender = loop, None, None
            self._wake = asyncio.Event()
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
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._run_sender(), name=f"forward:{self}")

    async def flush(self, timeout: float | None = None) -> None:
        if not self._outstanding or self._loop is not asyncio.get_running_loop():
            return
        timeout = self.flush_timeout if timeout is None else timeout
        waiter: tuple[set[str], asyncio.Future[None]] = (set(self._outstanding), self._loop.create_future())
        self._waiters.append(waiter)
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(waiter[1]), timeout)
        except asyncio.TimeoutError:
            left = len(waiter[0])
            where = f"kept in spool {self.spool_path}" if self.spool_path else "still in memory"
            logger.warning(
                "%s: flush timed out after %.1fs with %d event(s) not delivered (%s)",
                self,
                timeout,
                left,
                where,
            )
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    async def shutdown(self, timeout: float | None = None) -> None:
        if self._store is None:
            return
        await self.flush(timeout)
        for task in (self._sender, self._starting):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._sender = self._starting = None
        store, self._store = self._store, None
        if isinstance(store, MemoryStore):
            lost = store.drain_all()
            for entry in lost:
                logger.error(
                    "event %r (id %s) LOST at shutdown: not delivered to %s and no spool_path is set",
                    entry.message.event_name,
                    entry.message.id,
                    self.transport.destination,
                    extra={"event_name": entry.message.event_name, "event_id": entry.message.id},
                )
            self._counts["dropped"] += len(lost)
        self._outstanding.clear()
        if self._transport_touched:
            self._transport_open = self._transport_touched = False
            try:
                await self.transport.close()
            except Exception:
                logger.exception("%s: closing the transport failed", self)
        await store.close()

    # -- accepting events ----------------------------------------------------------------------------------
    async def handle(self, event: Event) -> None:
        await self.handle_many([event])

    async def handle_many(self, events: Iterable[Event]) -> None:
        events = list(events)
        if not events:
            return
        self._counts["accepted"] += len(events)
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
        if messages:
            try:
                entries, dropped = await self._store.add(messages)
            except Exception as exc:  # e.g. disk full: these events are lost, say so for each
                self._counts["dropped"] += len(messages)
                for event in sources:
                    report_failure(event, self, exc)
                entries, dropped = [], []
            self._outstanding.update(entry.message.id for entry in entries)
            self._counts["dropped"] += len(dropped)
        if dead:
            await self._dead_letter(dead, stored=False)
        self._wake.set()

    # -- delivering ----------------------------------------------------------------------------------------
    async def _run_sender(self) -> None:
        await self._open_transport()
        outages = 0
        while True:
            try:
                self._wake.clear()
                assert self._store is not None
                entries, next_at = await self._store.due(time.time(), self._window)
                if entries:
                    outages = await self._send_round(entries, outages)
                    if outages:
                        # The broker is unreachable: pause the whole sender, not just these entries, or it would
                        # walk through the rest of the backlog hammering a broker that is down.
                        await asyncio.sleep(self._outage_delay(outages))
                    continue
                await self._sleep_until(next_at)
            except asyncio.CancelledError:
                raise
            except Exception:  # the sender must outlive any bug or I/O error, or events would pile up forever
                logger.exception("%s: delivery round failed; retrying", self)
                await asyncio.sleep(1.0)

    def _outage_delay(self, outages: int) -> float:
        # Equal jitter: never (almost) zero, so consecutive failures really back off.
        ceiling = self._outage_policy.backoff_ceiling(outages)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _open_transport(self) -> None:
        attempt = 0
        while not self._transport_open:
            self._transport_touched = True
            try:
                await self.transport.open()
                self._transport_open = True
            except Exception as exc:
                attempt += 1
                delay = self._outage_policy.backoff_ceiling(attempt)
                logger.warning(
                    "%s: cannot open %s (%s: %s); retrying in %.1fs",
                    self,
                    self.transport.destination,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _sleep_until(self, next_at: float | None) -> None:
        timeout = None if next_at is None else max(0.0, next_at - time.time())
        if self._store is not None and self._store.durable:
            # Poll the spool now and then: ``spool replay`` adds entries behind this process's back.
            timeout = self.relay_interval if timeout is None else min(timeout, self.relay_interval)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _send_round(self, entries: list[Entry], outages: int) -> int:
        t = self.transport
        entries, held = self._order.hold_back(entries)
        split = split_batches(
            entries,
            size=lambda e: t.message_size(e.message),
            max_count=t.max_batch_count,
            max_bytes=t.max_batch_bytes,
            max_message_bytes=t.max_message_bytes,
        )
        dead = [
            (e, DeadLetter(e.message, f"message is {n} bytes, over the limit of {t.system}", e.attempts))
            for e, n in split.oversize
        ]
        sent, deferred = await send_batches(self.transport, split.batches)
        now = time.time()
        delivered: list[Entry] = []
        retries: list[Retry] = []
        failed_sends = [error for _, _, error in sent if error]
        outages = outages + 1 if failed_sends else 0
        for batch, results, error in sent:
            if results is None:
                for entry in batch:  # due again as soon as the sender's outage pause is over
                    entry.last_error = error
                    retries.append(Retry(entry, now))
                continue
            for entry, result in zip(batch, results, strict=True):
                classify(entry, result, now, self.retry, delivered, retries, dead)
        if failed_sends and (outages == 1 or outages % 20 == 0):
            logger.warning(
                "%s: %s unreachable (%d consecutive failures): %s",
                self,
                t.destination,
                outages,
                failed_sends[0],
            )
        self._order.update(
            (r for r in retries if r.entry.attempts and r.next_attempt_at > now), [*delivered, *(e for e, _ in dead)]
        )
        free, behind = self._order.hold_back(deferred)
        held += behind + [Retry(entry, now) for entry in free]
        assert self._store is not None
        await self._store.resolve(delivered, [*retries, *held], dead)
        self._counts["delivered"] += len(delivered)
        self._counts["retried"] += len(retries)
        self._resolved(e.message.id for e in delivered)
        if dead:
            await self._dead_letter([d for _, d in dead], stored=True)
        return outages

    async def _dead_letter(self, dead: list[DeadLetter], *, stored: bool) -> None:
        self._counts["dead_lettered"] += len(dead)
        await report_dead_letters(
            dead,
            where=repr(self),
            destination=self.transport.destination,
            store=self._store,
            stored=stored,
            callback=self.on_dead_letter,
        )
        self._resolved(d.message.id for d in dead)

    def _resolved(self, ids: Iterable[str]) -> None:
        done = set(ids)
        if not done:
            return
        self._outstanding -= done
        for pending, future in self._waiters:
            pending -= done
            if not pending and not future.done():
                future.set_result(None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transport.system}:{self.transport.destination})"


__all__ = ["DeadLetterCallback", "ForwardHandler", "ForwarderStats", "KeyFunction"]
