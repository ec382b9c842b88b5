"""The accepting side of :class:`~fastapi_events.delivery.ForwardHandler` once a request's events are encoded:
waiting for room in the full in-memory queue (backpressure), giving up on events only while the broker is down,
and waiting for the hand-over.

A mixin, like :class:`~fastapi_events.delivery._sender.Sender`, whose state it shares.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ._deadletters import report_dropped
from ._memory import MemoryStore
from ._sender import Sender
from ._transport import OutboundMessage

logger = logging.getLogger("fastapi_events.delivery")


class Admission(Sender):
    max_queue_size: int
    flush_timeout: float
    _timeout_logged_at: float

    async def _store_all(self, messages: list[OutboundMessage]) -> list[OutboundMessage]:
        """Store ``messages``; when the in-memory queue is full, wait in line for room (backpressure on the
        dispatching request). Returns what could not be stored: the broker is known to be down."""
        store = self._store
        assert store is not None
        _, over = await store.add(messages)
        if not over or self._outage.active or not isinstance(store, MemoryStore):
            return over
        self._wake.set()  # the sender makes the room
        waiter = store.wait_for_room(over)
        try:
            await waiter.future
        except asyncio.CancelledError:
            # The request went away while waiting (server shutdown): what was stored stays, the rest is reported.
            store.leave_line(waiter)
            rest = list(waiter.remaining)
            self._resolved(message.id for message in rest)  # nobody waits for them any more
            await asyncio.shield(self._drop(rest, "the dispatching request was cancelled"))
            raise
        return list(waiter.remaining)

    async def _drop(self, messages: list[OutboundMessage], why: str = "") -> None:
        """Give up on events never stored: logged (ERROR, each by name), counted, passed to ``on_dead_letter``."""
        if not messages:
            return
        if not why:
            why = (
                f"{self.transport.destination} is unreachable and the in-memory queue is full "
                f"({self.max_queue_size} events); configure spool_path= to keep events through broker outages"
            )
        self._counts["dropped"] += len(messages)
        await report_dropped(messages, why, self.on_dead_letter)

    async def _hand_over(self, handed: asyncio.Future[bool | None], ids: list[str]) -> None:
        """Wait until the sender handed these events to the broker: the request's loop may close right after
        it returns (``TestClient`` without ``with``), and a server's graceful shutdown waits for requests."""
        if await self._handovers.wait(handed, ids, self.flush_timeout) is False:
            now = time.monotonic()
            if now - self._timeout_logged_at >= self._outage.log_interval:
                self._timeout_logged_at = now
                logger.warning(
                    "%s: %d event(s) not accepted by %s within flush_timeout=%.1fs; the background sender carries on",
                    self,
                    len(ids),
                    self.transport.destination,
                    self.flush_timeout,
                )


__all__ = ["Admission"]
