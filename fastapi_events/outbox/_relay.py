"""Delivering outbox rows: one round (decode, hand to every handler, record the verdicts) and the relay loop.

The same :class:`Deliverer` serves rows the current process has just committed (leased to it at insert time,
so no claim is needed) and rows a :class:`Relay` claimed because nobody finished them: a crash, a restart, a
deploy, or events with an ordering key, which always go through a claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from .. import _hooks
from .._event_meta import IdentifiedEvent
from .._report import ErrorHook, current_error_hook
from ..codec import decode_event
from ..delivery import RetryPolicy
from ..errors import MalformedMessageError
from . import _store
from ._db import Database
from ._store import Change, Record
from ._targets import Failure, Item, Target, deliver
from ._verdict import Dead, judge

logger = logging.getLogger("fastapi_events.outbox")

_BACKOFF = RetryPolicy(None, None, 0.1, 5.0)


def backoff(failures: int) -> float:
    """Equal jitter: never (almost) zero, so consecutive failures really back off."""
    ceiling = _BACKOFF.backoff_ceiling(failures)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class Health:
    """Says once that the database became unreachable (and every 10th failure after), and when it is back."""

    def __init__(self) -> None:
        self.failures = 0

    def failed(self, what: str, exc: BaseException, delay: float | None = None) -> None:
        self.failures += 1
        if self.failures == 1 or self.failures % 10 == 0:
            retry = f"; retrying in {delay:.1f}s" if delay is not None else ""
            logger.warning(
                "outbox relay: database unreachable while %s (%d consecutive failure(s)): %s: %s%s",
                what,
                self.failures,
                type(exc).__name__,
                exc,
                retry,
            )

    def ok(self) -> None:
        if self.failures:
            logger.warning("outbox relay: database reachable again after %d failure(s)", self.failures)
            self.failures = 0


class Deliverer:
    def __init__(
        self,
        db: Database,
        outbox_name: str,
        table: Any,
        owner: str,
        targets: Sequence[Target],
        retry: RetryPolicy,
        lease: float,
        keep_finished: bool,
        on_error: ErrorHook | None,
    ) -> None:
        self.db = db
        self.outbox_name = outbox_name
        self.table = table
        self.owner = owner
        self.targets = targets
        self.retry = retry
        self.lease = lease
        self.keep_finished = keep_finished
        self.on_error = on_error
        self.health = Health()
        self._outages = 0

    async def process(self, records: Sequence[Record]) -> None:
        items: list[Item] = []
        verdicts: dict[int, dict[str, Failure | None]] = {}
        for record in records:
            try:
                name, payload = decode_event(record.body)
            except MalformedMessageError as exc:
                verdicts[record.seq] = {"<decode>": Failure(str(exc), permanent=True)}
                continue
            event = IdentifiedEvent(
                name, payload, record.event_id, record.created_at, record.attempts + 1, record.headers or {}
            )
            event.body = record.body  # forwarders send the committed body as it is
            items.append((record, event))
        renewing = asyncio.get_running_loop().create_task(self._renew([r.seq for r in records]))
        token = current_error_hook.set(self.on_error) if self.on_error is not None else None
        try:
            verdicts.update(await deliver(self.targets, items))
        finally:
            if token is not None:
                current_error_hook.reset(token)
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        outage = any(f is not None and f.outage for v in verdicts.values() for f in v.values())
        self._outages = self._outages + 1 if outage else 0
        now = time.time()
        finished: list[int] = []
        changes: list[Change] = []
        dead: list[Dead] = []
        for record in records:
            change, gave_up = judge(record, verdicts.get(record.seq, {}), self.retry, now, backoff(self._outages))
            if change is None:
                finished.append(record.seq)
            else:
                changes.append(change)
            if gave_up is not None:
                dead.append(gave_up)
        await self._resolve(finished, changes, now)
        for d in dead:
            logger.error(
                "outbox event %r (id %s) dead-lettered for %s: %s",
                d.record.event_name,
                d.record.event_id,
                ", ".join(d.handlers),
                d.reason,
                extra={"event_name": d.record.event_name, "event_id": d.record.event_id},
            )
            _hooks.dead_lettered(d.record.event_name, self.outbox_name, d.reason)

    async def _renew(self, seqs: list[int]) -> None:
        # Handlers slower than the lease must not have their rows taken over by another relay meanwhile.
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.db.run(_store.renew, self.table, self.owner, seqs, time.time() + self.lease)
            except Exception as exc:
                self.health.failed(f"renewing the lease of {len(seqs)} row(s)", exc)
            else:
                self.health.ok()

    async def _resolve(self, finished: list[int], changes: list[Change], now: float) -> None:
        # The handlers are done; losing this write would only make them run again once the lease expires, so it
        # is retried for as long as the lease holds (a database restart, typically).
        deadline = now + self.lease
        failures = 0
        while True:
            try:
                await self.db.run(
                    _store.resolve, self.table, self.owner, finished, changes, time.time(), self.keep_finished
                )
                self.health.ok()
                return
            except Exception as exc:
                failures += 1
                delay = backoff(failures)
                self.health.failed("recording a delivery round", exc, delay)
                if time.time() + delay >= deadline:
                    logger.error(
                        "outbox: could not record the outcome of %d event(s) (%s); they are delivered again "
                        "once their lease expires",
                        len(finished) + len(changes),
                        exc,
                    )
                    return
                await asyncio.sleep(delay)


class Relay:
    """Claims due rows in batches and hands them to a :class:`Deliverer`, until cancelled."""

    def __init__(
        self,
        deliverer: Deliverer,
        batch_size: int,
        poll_interval: float,
        retention: float | None,
        wake: asyncio.Event,
        on_claim: Callable[[int], None] | None = None,
    ) -> None:
        self.deliverer = deliverer
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retention = retention
        self.wake = wake
        self.on_claim = on_claim
        self.stopping = False  # set by the owner: finish the current round, then return
        self._next_cleanup = 0.0

    async def run(self) -> None:
        d = self.deliverer
        health = d.health
        while not self.stopping:
            self.wake.clear()
            try:
                now = time.time()
                records, due = await d.db.run(
                    _store.claim_or_next, d.table, d.owner, now, d.lease, self.batch_size, d.db.is_postgres
                )
                if self.retention is not None and now >= self._next_cleanup:
                    await self._cleanup(now)
            except Exception as exc:
                delay = backoff(health.failures + 1)
                health.failed("claiming events", exc, delay)
                await asyncio.sleep(delay)
                continue
            health.ok()
            if records:
                if self.on_claim is not None:
                    self.on_claim(len(records))
                await d.process(records)
                continue
            # A timer for the next row to become claimable (a delayed event, a retry, the lease of a due row
            # expiring: its relay may have died): rows written later wake us (NOTIFY, or this process's commits)
            # and the timer is set again. The poll interval is only the safety net for what sends no wake-up:
            # a lost LISTEN connection, rows written by a process that does not notify.
            timeout = self.poll_interval if due is None else min(self.poll_interval, max(0.0, due - time.time()))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)

    async def _cleanup(self, now: float) -> None:
        assert self.retention is not None
        d = self.deliverer
        while await d.db.run(_store.delete_done, d.table, now - self.retention, 1000) >= 1000:
            pass
        self._next_cleanup = now + min(60.0, max(1.0, self.retention / 10))


__all__ = ["Deliverer", "Relay", "backoff"]
