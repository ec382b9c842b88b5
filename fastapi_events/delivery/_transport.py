"""What the delivery layer needs from a broker: send a batch, report each entry's outcome."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(slots=True)
class OutboundMessage:
    """One encoded event on its way to a broker (treat as read-only: not frozen, since that would triple the cost
    of making one, and one is made per event)."""

    id: str  # stable per-event id (uuid4 hex): deduplication id, message id
    event_name: str
    body: bytes  # from the codec: JSON ["event name", payload] (or the user's serializer)
    attributes: dict[str, str] = field(default_factory=dict)  # event name, event id, trace context
    key: str | None = None  # ordering / partition / message-group key
    # The transport's message_size, kept once known: it is needed at acceptance and again for every round.
    size: int = field(default=-1, init=False, compare=False, repr=False)


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # transient: try this entry again later
    PERMANENT = "permanent"  # the broker will never accept this entry: dead-letter it


@dataclass(frozen=True, slots=True)
class EntryResult:
    outcome: Outcome
    reason: str = ""
    retry_after: float | None = None  # RETRY: seconds the broker asked us to wait (instead of the backoff)


DELIVERED = EntryResult(Outcome.DELIVERED)


@runtime_checkable
class Transport(Protocol):
    """A broker client used by :class:`~fastapi_events.delivery.ForwardHandler`.

    Nothing here may block the event loop: blocking SDK calls go to the transport's own worker thread.
    ``send_batch`` is only called after ``open`` succeeded, never concurrently with ``open``/``close``; it
    returns one result per message, in order. Raising from ``send_batch`` means "the broker could not be
    reached": every entry is retried without using up its retry budget (an outage must not turn events into
    dead letters) - raise too when the destination is missing or refuses our credentials, which a redeploy or
    an operator fixes minutes later.

    Calls may come from a new event loop (an app running a loop per request, as ``TestClient`` without ``with``
    does): a transport holding loop-bound resources re-creates them on the new loop.

    Optional attribute ``max_concurrent_batches: int`` (default 1): how many batches of one delivery round may be
    in flight at once. With 1, batches go one after another and the broker receives events in the order they
    were accepted; more trades that order (except per key) for throughput on high-latency brokers.

    Optional method ``submit(batch) -> (count, awaitable of the results)``, for an SDK that buffers and delivers
    from threads of its own (librdkafka, Pub/Sub's publisher): hands the messages to the SDK at once, on the
    event loop, without blocking; ``count`` says how many of the first messages the SDK holds when it returns.
    Those are handed over then (the requests that dispatched them go on), and the forwarder submits its next
    round without waiting for this one's results; the awaitable resolves (or raises, as ``send_batch`` does)
    once the SDK reported on every message - retries and dead letters follow those reports.

    Optional attribute ``submit_per_call: bool`` (default True), with ``submit``: whether a request's call may
    submit its own events while nothing is queued before them (one ``submit`` per request). False when the SDK's
    publish call costs enough per call that letting the sender batch several requests' events pays (Pub/Sub's
    ``publish()`` is Python); the sender's rounds still submit, so events are handed over as early.
    """

    system: str  # "aws_sqs", "gcp_pubsub", "kafka", "redis" (OTel messaging.system)
    destination: str  # queue URL / topic path / stream: spool key, messaging.destination.name
    max_batch_count: int
    max_batch_bytes: int
    max_message_bytes: int

    def message_size(self, message: OutboundMessage) -> int: ...

    async def open(self) -> None: ...

    async def send_batch(self, batch: Sequence[OutboundMessage]) -> Sequence[EntryResult]: ...

    async def close(self) -> None: ...


def message_size(transport: Transport, message: OutboundMessage) -> int:
    """``transport.message_size(message)``, computed once per message."""
    size = message.size
    if size < 0:
        size = transport.message_size(message)
        message.size = size
    return size


Submitted = tuple[int, Awaitable[Sequence[EntryResult]]]  # what ``Transport.submit`` returns (see there)


def submitter(transport: Transport) -> Callable[[Sequence[OutboundMessage]], Submitted] | None:
    """The transport's ``submit`` when it has one (a buffering SDK), else None."""
    # An optional member (see Transport), looked up on every round: cheaper than an isinstance check against a
    # runtime-checkable Protocol, which looks up every member.
    submit = getattr(transport, "submit", None)
    return submit if callable(submit) else None


def call_submitter(transport: Transport) -> Callable[[Sequence[OutboundMessage]], Submitted] | None:
    """:func:`submitter`, unless the transport's ``submit_per_call`` (see Transport) leaves its events to the
    sender's rounds: what a request's call may hand its own events to."""
    return submitter(transport) if getattr(transport, "submit_per_call", True) else None


__all__ = [
    "DELIVERED",
    "EntryResult",
    "OutboundMessage",
    "Outcome",
    "Submitted",
    "Transport",
    "call_submitter",
    "message_size",
    "submitter",
]
