"""Where dead letters go: always the log (ERROR, with event name and reason), then the spool's dead-letter table
and/or the user's ``on_dead_letter`` callback."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence

from .. import _hooks
from ._store import DeadLetter, PendingStore
from ._transport import OutboundMessage

logger = logging.getLogger("fastapi_events.delivery")

#: ``on_dead_letter(message, reason)``, sync or async. For an event that could not be encoded ``message.body``
#: is the ``repr`` of the event (for diagnosis; it is not a wire body).
DeadLetterCallback = Callable[[OutboundMessage, str], Awaitable[None] | None]


async def report_dead_letters(
    dead: Sequence[DeadLetter],
    *,
    where: str,
    destination: str,
    store: PendingStore | None,
    stored: bool,
    callback: DeadLetterCallback | None,
) -> None:
    """Log every dead letter, store those not stored yet (when the store is durable), call ``callback``.

    ``stored``: the store already moved them to its dead-letter table (entries that failed while pending).
    """
    for d in dead:
        logger.error(
            "event %r (id %s) dead-lettered for %s: %s",
            d.message.event_name,
            d.message.id,
            destination,
            d.reason,
            extra={"event_name": d.message.event_name, "event_id": d.message.id},
        )
    if _hooks.on_dead_letter:
        for d in dead:
            _hooks.dead_lettered(d.message.event_name, where, d.reason)
    if not stored and store is not None and store.durable:
        try:
            await store.add_dead(dead)
        except Exception:
            logger.exception("%s: could not store %d dead letter(s) in the spool", where, len(dead))
    await call_dead_letter_callback(callback, [d.message for d in dead], [d.reason for d in dead])


async def report_dropped(messages: Sequence[OutboundMessage], why: str, callback: DeadLetterCallback | None) -> None:
    """Events given up before they were stored (no room while the broker is down): each logged at ERROR by name,
    then passed to ``callback``."""
    for message in messages:
        logger.error(
            "event %r (id %s) DROPPED: %s",
            message.event_name,
            message.id,
            why,
            extra={"event_name": message.event_name, "event_id": message.id},
        )
    await call_dead_letter_callback(callback, messages, f"dropped: {why}")


async def call_dead_letter_callback(
    callback: DeadLetterCallback | None, messages: Sequence[OutboundMessage], reasons: Sequence[str] | str
) -> None:
    """``callback(message, reason)`` for each message (one reason for all, or one each); its errors are logged."""
    if callback is None:
        return
    for index, message in enumerate(messages):
        reason = reasons if isinstance(reasons, str) else reasons[index]
        try:
            result = callback(message, reason)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("on_dead_letter failed for event %r (id %s)", message.event_name, message.id)


__all__ = ["DeadLetterCallback", "call_dead_letter_callback", "report_dead_letters", "report_dropped"]
