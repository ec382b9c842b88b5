"""Turning accepted events into :class:`OutboundMessage` s, or into dead letters when that cannot work."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .._event_meta import stable_ids
from .._names import event_name_str
from ..codec import (
    ATTR_EVENT_ID,
    ATTR_EVENT_NAME,
    Serializer,
    encode_bodies,
    encode_event,
    new_event_id,
    trace_context,
)
from ..errors import SerializationError
from ..typing import Event
from ._store import DeadLetter
from ._transport import OutboundMessage, Transport

KeyFunction = Callable[[Event], "str | None"]

_REPR_LIMIT = 64 * 1024  # of an unencodable event kept for diagnosis


@dataclass(slots=True)
class Encoded:
    messages: list[OutboundMessage] = field(default_factory=list)
    sources: list[Event] = field(default_factory=list)  # the event of each message, same order
    dead: list[DeadLetter] = field(default_factory=list)


def encode_events(
    events: Sequence[Event],
    transport: Transport,
    *,
    serializer: Serializer | None,
    id_generator: Callable[[], str],
    key: KeyFunction | None,
) -> Encoded:
    """Encode each event; one that cannot be encoded, or is over the transport's size limit, becomes a dead
    letter on its own - checked here, before it is stored, so that it never occupies the spool or a batch.

    One pass per step over the whole call (ids, names, bodies), and per event only what goes on the wire: this
    runs for every event a request dispatches.
    """
    out = Encoded()
    limit = min(transport.max_message_bytes, transport.max_batch_bytes)
    sizer = transport.message_size
    ids = stable_ids(events, id_generator)
    names = [name if type(name := event[0]) is str else event_name_str(name) for event in events]
    bodies = encode_bodies(events, names) if serializer is None else [None] * len(events)
    messages, sources = out.messages, out.sources
    current: dict[str, str] | None = None  # the caller's trace context: the same for every event of the call
    for event, name, event_id, body in zip(events, names, ids, bodies, strict=True):
        carried = None if type(event) is tuple else getattr(event, "trace_context", None)
        if carried is not None and isinstance(carried, Mapping):  # ABC isinstance is slow; most events are tuples
            attributes = trace_context(event)
            attributes[ATTR_EVENT_NAME] = name
            attributes[ATTR_EVENT_ID] = event_id
        else:
            if current is None:
                current = trace_context(event)
            # Ours last so that a propagator key can never overwrite them.
            attributes = {**current, ATTR_EVENT_NAME: name, ATTR_EVENT_ID: event_id}
        routing_key = None
        key_error: str | None = None
        if key is not None:
            try:
                routing_key = key(event)
            except Exception as exc:
                key_error = f"key function failed: {type(exc).__name__}: {exc}"
        if body is None:
            try:
                body = encode_event(event, serializer)
            except SerializationError as exc:
                text = repr(event).encode("utf-8", "replace")[:_REPR_LIMIT]
                message = OutboundMessage(event_id, name, text, attributes, routing_key)
                out.dead.append(DeadLetter(message, str(exc), 0, replayable=False))
                continue
        message = OutboundMessage(event_id, name, body, attributes, routing_key)
        if key_error is not None:
            # Replayable: replaying sends it without a key, which is the operator's call to make.
            out.dead.append(DeadLetter(message, key_error, 0, replayable=True))
            continue
        message.size = size = sizer(message)
        if size > limit:
            reason = f"message is {size} bytes, over the {limit}-byte limit of {transport.system}"
            out.dead.append(DeadLetter(message, str(SerializationError(name, reason)), 0, replayable=True))
            continue
        messages.append(message)
        sources.append(event)
    return out


__all__ = ["Encoded", "KeyFunction", "encode_events", "new_event_id"]
