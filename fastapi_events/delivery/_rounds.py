"""One delivery round's sends and the verdict on each entry, for :class:`~fastapi_events.delivery.ForwardHandler`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from .. import _hooks
from ..handlers.base import Answer, Verdict
from ._batching import Batches, split_batches
from ._ordering import KeyOrder
from ._retry import RetryPolicy
from ._store import DeadLetter, Entry, Retry
from ._transport import EntryResult, OutboundMessage, Outcome, Submitted, Transport, message_size, submitter

Sent = list[tuple[list[Entry], Sequence[EntryResult] | None, str]]


def split_for(transport: Transport, entries: Sequence[Entry]) -> Batches[Entry]:
    """``entries`` in batches within ``transport``'s count and size limits (oversize ones set apart)."""
    return split_batches(
        entries,
        size=lambda e: message_size(transport, e.message),
        max_count=transport.max_batch_count,
        max_bytes=transport.max_batch_bytes,
        max_message_bytes=transport.max_message_bytes,
    )


async def send_batches(
    transport: Transport, batches: list[list[Entry]], on_submitted: Callable[[list[Entry]], None] | None = None
) -> tuple[Sent, list[Entry]]:
    """Send a round's batches; returns ``(batch, results or None on failure, error)`` per batch sent and the
    entries held back within the round. A buffering transport (``submit``) gets every batch at once and
    ``on_submitted`` is told which entries its SDK holds before the results are awaited."""
    submit = submitter(transport)
    if submit is not None:
        return await _submit_batches(transport, submit, batches, on_submitted)
    # An optional member of a transport (see Transport): ours and users' transports may leave it out.
    concurrency = max(1, int(getattr(transport, "max_concurrent_batches", 1)))
    if concurrency > 1 and not KeyOrder.spans_batches(batches):
        limit = asyncio.Semaphore(concurrency)

        async def bounded(batch: list[Entry]) -> tuple[Sequence[EntryResult] | None, str]:
            async with limit:
                return await send(transport, batch)

        sent = await asyncio.gather(*(bounded(batch) for batch in batches))
        return [(batch, results, error) for batch, (results, error) in zip(batches, sent, strict=True)], []
    # One batch after another, so that the broker receives events in the order they were accepted. Once an
    # entry of a key was not delivered, that key's later entries wait for a later round (they must not
    # overtake it); once a send failed outright, the rest of the round waits for the sender's outage pause.
    out: Sent = []
    deferred: list[Entry] = []
    stalled: set[str] = set()
    for position, batch in enumerate(batches):
        now_batch = [e for e in batch if e.message.key is None or e.message.key not in stalled]
        deferred += [e for e in batch if e.message.key is not None and e.message.key in stalled]
        if not now_batch:
            continue
        results, error = await send(transport, now_batch)
        out.append((now_batch, results, error))
        if results is None:
            deferred += [e for later in batches[position + 1 :] for e in later]
            break
        for entry, result in zip(now_batch, results, strict=True):
            if entry.message.key is not None and result.outcome is Outcome.RETRY:
                stalled.add(entry.message.key)
    return out, deferred


async def _submit_batches(
    transport: Transport,
    submit: Callable[[Sequence[OutboundMessage]], Submitted],
    batches: list[list[Entry]],
    on_submitted: Callable[[list[Entry]], None] | None,
) -> tuple[Sent, list[Entry]]:
    # The SDK keeps the order in which messages were handed to it (per partition / ordering key) and retries
    # by itself; this layer only hears about an entry again when the SDK gave up on it.
    submitted: list[tuple[list[Entry], Awaitable[Sequence[EntryResult]] | None, str]] = []
    held: list[Entry] = []
    for batch in batches:
        try:
            count, waiting = submit([entry.message for entry in batch])
        except Exception as exc:
            submitted.append((batch, None, f"{type(exc).__name__}: {exc}"))
            continue
        held += batch[:count]
        submitted.append((batch, waiting, ""))
    if on_submitted is not None and held:
        on_submitted(held)
    out: Sent = []
    for batch, reports, error in submitted:
        if reports is None:
            out.append((batch, None, error))
            continue
        with _hooks.forward_batch(transport.system, transport.destination, [entry.message for entry in batch]):
            try:
                results = await reports
            except Exception as exc:
                out.append((batch, None, f"{type(exc).__name__}: {exc}"))
                continue
        out.append((batch, *checked(results, len(batch))))
    return out, []


async def send(transport: Transport, batch: list[Entry]) -> tuple[Sequence[EntryResult] | None, str]:
    """One ``send_batch``; a raising transport or a wrong number of results fails the whole batch."""
    messages = [entry.message for entry in batch]
    try:
        with _hooks.forward_batch(transport.system, transport.destination, messages):
            results = await transport.send_batch(messages)
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return checked(results, len(batch))


def checked(results: Sequence[EntryResult], count: int) -> tuple[Sequence[EntryResult] | None, str]:
    """A transport's results for ``count`` messages; None and why when they are not one per message (the whole
    batch counts as not sent)."""
    if len(results) != count:
        return None, f"transport returned {len(results)} results for {count} messages"
    return results, ""


async def send_now(transport: Transport, entries: Sequence[Entry]) -> list[tuple[Entry, Answer]]:
    """One round for a caller that keeps the durable copy itself (the outbox): each entry's answer, at once.

    Nothing is queued, spooled or retried here; a batch that could not be sent, and what it held back, answers
    "retry" as an outage (the broker was unreachable, not the event at fault).
    """
    split = split_for(transport, entries)
    answers = [
        (entry, Answer(Verdict.DEAD, f"message is {size} bytes, over the limit of {transport.system}"))
        for entry, size in split.oversize
    ]
    sent, deferred = await send_batches(transport, split.batches)
    for batch, results, error in sent:
        if results is None:
            answers += [(entry, Answer(Verdict.RETRY, error, outage=True)) for entry in batch]
            continue
        for entry, result in zip(batch, results, strict=True):
            answers.append((entry, _answer(result)))
    held = Answer(Verdict.RETRY, "held back behind an earlier failure", outage=True)
    answers += [(entry, held) for entry in deferred]
    return answers


def _answer(result: EntryResult) -> Answer:
    if result.outcome is Outcome.DELIVERED:
        return DELIVERED_ANSWER
    return Answer(Verdict.DEAD if result.outcome is Outcome.PERMANENT else Verdict.RETRY, result.reason)


DELIVERED_ANSWER = Answer(Verdict.DELIVERED)


def classify(
    entry: Entry,
    result: EntryResult,
    now: float,
    retry: RetryPolicy,
    delivered: list[Entry],
    retries: list[Retry],
    dead: list[tuple[Entry, DeadLetter]],
) -> None:
    """File one entry's result under delivered, retried (with its next attempt time) or dead."""
    if result.outcome is Outcome.DELIVERED:
        delivered.append(entry)
        return
    entry.last_error = result.reason
    if result.outcome is Outcome.PERMANENT:
        dead.append((entry, DeadLetter(entry.message, f"rejected by broker: {result.reason}", entry.attempts)))
        return
    entry.attempts += 1
    if entry.first_failure_at is None:
        entry.first_failure_at = now
    if retry.exhausted(entry.attempts, entry.first_failure_at, now):
        reason = f"retry budget exhausted after {entry.attempts} attempt(s): {result.reason}"
        dead.append((entry, DeadLetter(entry.message, reason, entry.attempts)))
        return
    wait = retry.delay(entry.attempts) if result.retry_after is None else result.retry_after
    retries.append(Retry(entry, now + wait))
