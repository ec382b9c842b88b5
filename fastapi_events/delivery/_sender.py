"""The sender side of :class:`~fastapi_events.delivery.ForwardHandler`: the background task, its delivery rounds
and filing each round's outcome (delivered, retried, dead).

A mixin: the state it works on is set up by ``ForwardHandler.__init__`` and declared here for the type checker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Iterable, Sequence

from ._deadletters import DeadLetterCallback, report_dead_letters
from ._handover import Flushes, Handovers
from ._inflight import RoundsInFlight
from ._memory import MemoryStore
from ._ordering import KeyOrder
from ._outage import Outage
from ._retry import RetryPolicy
from ._rounds import Sent, classify, send_batches, split_for
from ._store import DeadLetter, Entry, PendingStore, Retry
from ._transport import Transport, submitter

logger = logging.getLogger("fastapi_events.delivery")


class Sender:
    transport: Transport
    retry: RetryPolicy
    relay_interval: float
    on_dead_letter: DeadLetterCallback | None
    _store: PendingStore | None
    _outage: Outage
    _window: int
    _wake: asyncio.Event
    _order: KeyOrder
    _rounds: RoundsInFlight
    _handovers: Handovers
    _flushes: Flushes
    _outstanding: set[str]
    _counts: dict[str, int]
    _resume_at: float  # time.monotonic() before which the sender pauses (the broker is down)
    _loop: asyncio.AbstractEventLoop | None
    _lasting_loop: asyncio.AbstractEventLoop | None
    _transport_open: bool
    _transport_touched: bool
    _stopping: bool
    # Entries taken out of the store (or accepted by a request) that the SDK does not hold yet: while there are
    # any, a request must not hand its events to the SDK itself, or they would overtake these.
    _unsubmitted: int

    async def _run_sender(self) -> None:
        try:
            await self._open_transport()
            while True:
                try:
                    pause = self._resume_at - time.monotonic()
                    if pause > 0:
                        await asyncio.sleep(pause)
                    self._wake.clear()
                    store = self._store
                    assert store is not None
                    entries, next_at = await store.due(time.time(), self._window)
                    if entries:
                        if self._overlapping(store):
                            self._unsubmitted += len(entries)
                            await self._rounds.start(functools.partial(self._watched_round, entries))
                        else:
                            await self._watched_round(entries)
                        continue
                    await self._sleep_until(next_at)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the sender must outlive any bug or I/O error, or events would pile up forever
                    logger.exception("%s: delivery round failed; retrying", self)
                    await asyncio.sleep(1.0)
        except asyncio.CancelledError:
            await self._rounds.cancel_all()
            queued = self._store.queued() if self._store is not None else 0
            if queued and not self._stopping:
                # The event loop is closing under the sender (TestClient without ``with``, asyncio.run ending).
                logger.warning(
                    "%s: event loop closing with %d event(s) not delivered to %s; they are sent when this "
                    "forwarder next runs on a loop (or lost at exit without spool_path)",
                    self,
                    queued,
                    self.transport.destination,
                )
            raise

    async def _watched_round(self, entries: list[Entry], submitted: asyncio.Future[None] | None = None) -> None:
        """One delivery round, logging now and then while the broker takes long to answer; after a failed
        send, the outage pause (the whole sender: it would only hammer a broker that is down)."""
        round_task = asyncio.ensure_future(self._send_round(entries, submitted))
        started = time.monotonic()
        try:
            while not round_task.done():
                await asyncio.wait((round_task,), timeout=self._outage.log_interval)
                if not round_task.done():
                    self._outage.still_waiting(time.monotonic() - started, self._queued())
            error = round_task.result()
        finally:
            round_task.cancel()
        if error:
            await asyncio.sleep(self._send_failed(error))
        elif self._outage.active:
            self._outage.recovered(self._queued())

    def _send_failed(self, error: str) -> float:
        """A send could not reach the broker: the outage pause of the sender; returns its length."""
        self._broker_down()
        pause = self._outage.failed("reach", error, self._queued())
        self._resume_at = max(self._resume_at, time.monotonic() + pause)
        return pause

    def _overlapping(self, store: PendingStore) -> bool:
        """Whether rounds may overlap: a buffering SDK, on a loop that outlives requests (see ``startup``), and
        entries being sent kept out of ``due`` (the memory queue does, the spool does not)."""
        return submitter(self.transport) is not None and not store.durable and self._lasting_loop is self._loop

    def _broker_down(self) -> None:
        """Waiting cannot get events to the broker sooner: requests waiting for the hand-over go on, those
        waiting for room give up what does not fit (reported by each of them)."""
        self._handovers.release_all()
        if isinstance(self._store, MemoryStore):
            self._store.release_waiters()

    def _queued(self) -> int:
        return self._store.queued() if self._store is not None else 0

    async def _open_transport(self) -> None:
        while not self._transport_open:
            self._transport_touched = True
            try:
                await self.transport.open()
                self._transport_open = True
            except Exception as exc:
                self._broker_down()
                await asyncio.sleep(self._outage.open_failed(exc, self._queued()))
        if self._outage.active:
            self._outage.recovered(self._queued())

    async def _sleep_until(self, next_at: float | None) -> None:
        timeout = None if next_at is None else max(0.0, next_at - time.time())
        if self._store is not None and self._store.durable:
            # Poll the spool now and then: ``spool replay`` adds entries behind this process's back.
            timeout = self.relay_interval if timeout is None else min(timeout, self.relay_interval)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _send_round(self, entries: list[Entry], submitted: asyncio.Future[None] | None = None) -> str:
        """Send due entries and file the results; returns the error when the broker could not be reached.
        ``submitted`` is set once a buffering SDK holds the round's entries (their requests may go on then)."""
        unsubmitted = len(entries) if submitted is not None else 0
        try:
            t = self.transport
            entries, held = self._order.hold_back(entries)
            split = split_for(t, entries)
            dead = [
                (e, DeadLetter(e.message, f"message is {n} bytes, over the limit of {t.system}", e.attempts))
                for e, n in split.oversize
            ]
            on_submitted = None
            if submitted is not None:

                def on_submitted(handed: list[Entry]) -> None:
                    nonlocal unsubmitted
                    self._unsubmitted -= len(handed)
                    unsubmitted -= len(handed)
                    self._handovers.resolve({entry.message.id for entry in handed})
                    if not submitted.done():
                        submitted.set_result(None)

            sent, deferred = await send_batches(self.transport, split.batches, on_submitted)
            return await self._settle(sent, deferred, held, dead)
        finally:
            self._unsubmitted -= unsubmitted

    async def _settle(
        self, sent: Sent, deferred: Sequence[Entry], held: list[Retry], dead: list[tuple[Entry, DeadLetter]]
    ) -> str:
        """File a round's results; returns the first send error (the broker could not be reached), else ""."""
        now = time.time()
        delivered: list[Entry] = []
        retries: list[Retry] = []
        failed_sends = [error for _, _, error in sent if error]
        for batch, results, error in sent:
            if results is None:
                for entry in batch:  # due again as soon as the sender's outage pause is over
                    entry.last_error = error
                    retries.append(Retry(entry, now))
                continue
            for entry, result in zip(batch, results, strict=True):
                classify(entry, result, now, self.retry, delivered, retries, dead)
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
        return failed_sends[0] if failed_sends else ""

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
        self._handovers.resolve(done)
        self._flushes.resolve(done)
        self._outstanding -= done


__all__ = ["Sender"]
