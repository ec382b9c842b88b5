"""Event identity: the stable id, name, dispatch time and delivery attempt of the event a handler is handling.

Events that carry an identity are :class:`IdentifiedEvent` s: still the 2-tuple ``(name, payload)`` every handler
unpacks, with the metadata as attributes. Outbox events carry the row's event id; forwarders send it as the
message / deduplication id and consumers hand the received id back to their handlers. A handler reads it with
the :func:`event_meta` dependency::

    @local_handler.register(event_name="order.*")
    async def on_order(event: Event, meta: EventMeta = Depends(event_meta)) -> None:
        print(meta.id, meta.name, meta.dispatched_at, meta.attempt)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import _hooks
from ._names import event_name_str
from .codec import ATTR_EVENT_ID, new_event_id, new_event_ids
from .typing import Event, EventName


class IdentifiedEvent(tuple):  # type: ignore[type-arg]
    """``(name, payload)`` plus ``event_id``, ``dispatched_at`` (epoch seconds), ``attempt`` (1-based) and the
    propagated ``trace_context`` headers. Unpacks, compares and hashes like the plain tuple."""

    event_id: str
    dispatched_at: float | None
    attempt: int
    trace_context: dict[str, str]
    body: str  # outbox events: the committed wire body

    def __new__(
        cls,
        name: EventName,
        payload: Any,
        event_id: str,
        dispatched_at: float | None,
        attempt: int = 1,
        trace_context: Mapping[str, str] | None = None,
    ) -> IdentifiedEvent:
        self = super().__new__(cls, (name, payload))
        self.event_id = event_id
        self.dispatched_at = dispatched_at
        self.attempt = attempt
        if trace_context is not None:
            # Read by the codec (``trace_context(event)``) when a forwarder builds the message; an empty mapping
            # says "nothing to propagate" (the current context is the relay's, not the dispatcher's).
            self.trace_context = dict(trace_context)
        return self

    @property
    def otel_context(self) -> Any:
        """The dispatching span's context, from the propagated headers (read by the OpenTelemetry integration,
        so that handler spans join the trace of the request that committed the event)."""
        carried = self.__dict__.get("trace_context")
        extract = _hooks.context_extractor
        if not carried or extract is None:
            return None
        if "_otel_context" not in self.__dict__:
            self.__dict__["_otel_context"] = extract(carried)
        return self.__dict__["_otel_context"]

    def __reduce__(self) -> tuple[Any, ...]:
        return (IdentifiedEvent, (self[0], self[1], self.event_id, self.dispatched_at, self.attempt))


@dataclass(frozen=True, slots=True)
class EventMeta:
    """What a handler may know about the event it handles, beyond name and payload."""

    id: str
    name: str
    dispatched_at: float | None  # epoch seconds; None when the sender did not say
    attempt: int  # 1 on the first delivery to this handler, then 2, 3, ... on redeliveries


def event_meta(event: Event) -> EventMeta:
    """Dependency (``Depends(event_meta)``) returning the metadata of the event being handled.

    An event without an identity of its own (a plain in-process ``dispatch()``) gets an id on first request,
    kept with the event object, so every handler of that dispatch - forwarders included - sees the same id.
    """
    return EventMeta(
        stable_id(event),
        event_name_str(event[0]),
        getattr(event, "dispatched_at", None),
        getattr(event, "attempt", 1),
    )


# Plain tuples cannot carry attributes, and minting an id on every dispatch would cost every dispatch: the id is
# made on first request and kept while the event is recent (keyed by the object's id, which the value pins). A
# plain dict keeps insertion order; it is trimmed to its newest _LOCAL_IDS_LIMIT entries once it holds twice that,
# so that keeping an id costs one dict store.
_local_ids: dict[int, tuple[Event, str]] = {}
_LOCAL_IDS_LIMIT = 4096


def stable_id(event: Event, generator: Callable[[], str] = new_event_id) -> str:
    """The event's id: its own (:class:`IdentifiedEvent`), else one minted with ``generator`` on first request."""
    return stable_ids((event,), generator)[0]


def stable_ids(events: Sequence[Event], generator: Callable[[], str] = new_event_id) -> list[str]:
    """:func:`stable_id` of each of ``events``, in one pass."""
    ids: list[str] = []
    known = _local_ids
    # The default generator's ids are taken in one go (most events need a fresh one); a custom one is called.
    fresh = iter(new_event_ids(len(events))).__next__ if generator is new_event_id else generator
    minted = False
    for event in events:
        if type(event) is not tuple:  # a plain dispatch() is a tuple: no attribute to look up (that costs)
            own = getattr(event, "event_id", None)
            if own is not None:
                ids.append(str(own))
                continue
        found = known.get(id(event))
        if found is not None and found[0] is event:
            ids.append(found[1])
            continue
        event_id = fresh()
        known[id(event)] = (event, event_id)
        minted = True
        ids.append(event_id)
    if minted and len(known) > 2 * _LOCAL_IDS_LIMIT:
        _trim()
    return ids


def forget_ids(events: Sequence[Event]) -> None:
    """Let go of the ids minted for ``events``: every handler has had them. Kept until trimmed instead, a busy
    app's recent events (payloads included) would outlive the young GC generation, and the full collections that
    then run every few thousand requests walk all of them - about a third of a forwarder's CPU under load."""
    if _local_ids:
        pop = _local_ids.pop
        for event in events:
            pop(id(event), None)


def _trim() -> None:
    newest = list(_local_ids.items())[-_LOCAL_IDS_LIMIT:]
    _local_ids.clear()
    _local_ids.update(newest)


def received(event: Event, attributes: Mapping[str, str], message_id: str, attempt: int) -> IdentifiedEvent:
    """A consumed event with the id its producer sent (the broker's message id when it sent none)."""
    return IdentifiedEvent(event[0], event[1], attributes.get(ATTR_EVENT_ID) or message_id, None, attempt)


__all__ = ["EventMeta", "IdentifiedEvent", "event_meta", "forget_ids", "received", "stable_id", "stable_ids"]
