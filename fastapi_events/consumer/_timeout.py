"""``handler_timeout``: one attempt of a message's handlers may run for so long, then it counts as failed."""

from __future__ import annotations

import asyncio
import logging

from .._names import event_name_str
from ..errors import HandlerTimeoutError
from ..handlers import Kind
from ..handlers.base import deliver_strict
from ..handlers.local import LocalHandler
from ..typing import Event

logger = logging.getLogger("fastapi_events.consumer")

# Seconds a cancelled attempt gets to unwind before it is left behind as "cannot be interrupted".
CANCEL_GRACE = 0.5
_SYNC_KINDS = (Kind.SYNC, Kind.SYNC_GEN)


class HandlerDeadline:
    """Delivers an event to ``handler`` (``deliver_strict``) with a time limit; past it, raises
    :class:`HandlerTimeoutError`.

    Coroutine handlers are cancelled. A sync handler cannot be stopped - cancelling only stops waiting for its
    worker thread - so it is reported and left to finish on its own; the caller's slot is free at once.
    """

    def __init__(self, handler: LocalHandler, timeout: float) -> None:
        self.handler = handler
        self.timeout = timeout
        # Attempts that ignored their cancellation: referenced until they end, never awaited.
        self._abandoned: set[asyncio.Task[int]] = set()

    async def run(self, event: Event, message_id: str) -> int:
        attempt = asyncio.get_running_loop().create_task(deliver_strict(self.handler, event))
        try:
            done, _ = await asyncio.wait({attempt}, timeout=self.timeout)
        except asyncio.CancelledError:  # the consumer aborts: the attempt goes with the message's task
            attempt.cancel()
            raise
        if done:
            return attempt.result()
        attempt.cancel()
        await asyncio.wait({attempt}, timeout=CANCEL_GRACE)
        if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
            return attempt.result()  # finished in the same tick as the timeout: a success after all
        if not attempt.done():
            self._abandoned.add(attempt)
            attempt.add_done_callback(self._forget)
        self._report(event, message_id)
        raise HandlerTimeoutError(event_name_str(event[0]), self.timeout)

    def _report(self, event: Event, message_id: str) -> None:
        name = event_name_str(event[0])
        matched = [r for r in self.handler.registrations if r.regex.match(name)]
        threads = [r.name for r in matched if r.plan.handler_step.kind in _SYNC_KINDS]
        logger.error(
            "event %r (message %s): handler(s) %s still running after %gs: the attempt counts as failed and its "
            "slot is released%s",
            name,
            message_id,
            ", ".join(r.name for r in matched),
            self.timeout,
            f"; sync handler(s) {', '.join(threads)} keep running in their worker thread" if threads else "",
            extra={"event_name": name, "message_id": message_id},
        )

    def _forget(self, attempt: asyncio.Task[int]) -> None:
        self._abandoned.discard(attempt)
        if not attempt.cancelled():
            attempt.exception()  # already reported as a timeout: no "exception never retrieved" at exit


__all__ = ["CANCEL_GRACE", "HandlerDeadline"]
