"""Handing a request's events straight to a buffering SDK (librdkafka, Pub/Sub's publisher), on the request's own
call: the shortcut :class:`~fastapi_events.delivery.ForwardHandler` takes while nothing is queued before them.

The events are then handed over once the SDK's publish call returned, as they are when the sender submits them,
without the sender's round (a wake-up, a task, a batch split, a hand-over future per request). They are entries of
the in-memory queue from the start, counted against ``max_queue_size`` until their delivery reports are in; the
reports are filed as a round's are - retries, dead letters and outages all go the sender's way.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence

from .. import _hooks
from ._memory import MemoryStore
from ._rounds import checked
from ._sender import Sender
from ._store import Entry
from ._transport import DELIVERED, EntryResult, OutboundMessage, Submitted


class DirectSubmit(Sender):
    #: The transport's ``submit`` when the store is the in-memory queue (see ``ForwardHandler._start``).
    _submit: Callable[[Sequence[OutboundMessage]], Submitted] | None
    _max_batch_count: int
    _max_batch_bytes: int

    def _submit_direct(self, messages: list[OutboundMessage]) -> list[OutboundMessage] | None:
        """Hand ``messages`` to the SDK now, when nothing queued may go first and they fit in one batch and in
        the queue. Returns the messages the SDK does not hold yet (the caller waits for their hand-over), or None
        when the shortcut is not taken (the caller stores them for the sender)."""
        submit = self._submit
        store = self._store
        if (
            submit is None
            or self._unsubmitted
            or not self._transport_open
            or self._outage.active
            or self._lasting_loop is not self._loop
            or self._order
            or _hooks.on_forward_batch  # tracing: the sender's rounds carry the spans
            or not isinstance(store, MemoryStore)
            or len(messages) > self._max_batch_count
        ):
            return None
        if not store.can_bypass(len(messages)):
            return None
        if sum([message.size for message in messages]) > self._max_batch_bytes:
            return None
        token = store.admit_in_flight(messages)
        try:
            count, reports = submit(messages)
        except Exception as exc:  # as a failed send of a round: due again after the outage pause
            self._settle_later(store, token, None, f"{type(exc).__name__}: {exc}")
            return messages
        rest = len(messages) - count
        self._unsubmitted += rest
        future = asyncio.ensure_future(reports)
        future.add_done_callback(functools.partial(self._reported, store, token, len(messages), rest))
        return messages[count:]

    def _reported(
        self,
        store: MemoryStore,
        token: int,
        count: int,
        unsubmitted: int,
        future: asyncio.Future[Sequence[EntryResult]],
    ) -> None:
        """The SDK reported on every message of a direct batch: file it (delivered at once, anything else as a
        round's outcome, in a task)."""
        self._unsubmitted -= unsubmitted
        if store is not self._store:  # shut down, or a new store since: these entries are no longer ours
            return
        results: Sequence[EntryResult] | None = None
        if future.cancelled():
            error = "the SDK's report was cancelled"
        elif (exc := future.exception()) is not None:
            error = f"{type(exc).__name__}: {exc}"
        else:
            results, error = checked(future.result(), count)
        if results is not None and results.count(DELIVERED) == count:
            messages = store.forget(token)
            if not messages:  # taken meanwhile (a new event loop requeued it)
                return
            self._counts["delivered"] += count
            if unsubmitted or self._flushes:  # someone waits for these by id
                self._resolved([message.id for message in messages])
            if self._outage.active:  # submitted before the outage began, delivered all the same
                self._outage.recovered(self._queued())
            return
        self._settle_later(store, token, results, error)

    def _settle_later(self, store: MemoryStore, token: int, results: Sequence[EntryResult] | None, error: str) -> None:
        entries = store.take_direct(token)
        # From here on they are outstanding like any stored entry (a flush waits for their retries).
        self._outstanding.update(entry.message.id for entry in entries)
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        self._rounds.track(loop.create_task(self._settle_direct(store, entries, results, error)))

    async def _settle_direct(
        self, store: MemoryStore, entries: list[Entry], results: Sequence[EntryResult] | None, error: str
    ) -> None:
        if store is not self._store:
            return
        failed = await self._settle([(entries, results, error)], [], [], [])
        if failed:
            self._send_failed(failed)
        elif self._outage.active:  # the broker answered
            self._outage.recovered(self._queued())
        self._wake.set()  # retries may be due


__all__ = ["DirectSubmit"]
