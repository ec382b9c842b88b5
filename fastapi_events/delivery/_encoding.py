"""Turning accepted events into :class:`OutboundMessage` s, or into dead letters when that cannot work."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .._event_meta import stable_id
from .._names import event_name_str
from ..codec import ATTR_EVENT_ID, ATTR_EVENT_NAME, Serializer, encode_event, new_event_id, trace_context
from ..errors import SerializationError
from ..typing import Event
from ._store import DeadLetter
from ._transport import OutboundMessage, Transport, message_size

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
    letter on its own - checked here, before it is stored, so that it never occupies the spool or a batch."""
    out = Encoded()
    limit = min(transport.max_message_bytes, transport.max_batch_bytes)
    current: dict[str, str] | None = None  # the caller's trace context: the same for every event of the call
    for event in events:
        name = event_name_str(event[0])
        event_id = stable_id(event, id_generator)
        carried = getattr(event, "trace_context", None)
        if isinstance(carried, Mapping):
            attributes = trace_context(event)
        else:
            if current is None:
                current = trace_context(event)
            attributes = current.copy()
        attributes[ATTR_EVENT_NAME] = name
        attributes[ATTR_EVENT_ID] = event_id
        try:
            routing_key = key(event) if key is not None else None
        except Exception as exc:
            routing_key = None
            key_error: str | None = f"key function failed: {type(exc).__name__}: {exc}"
        else:
            key_error = None
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
        size = message_size(transport, message)
        if size > limit:
            reason = f"message is {size} bytes, over the {limit}-byte limit of {transport.system}"
            out.dead.append(DeadLetter(message, str(SerializationError(name, reason)), 0, replayable=True))
            continue
        out.messages.append(message)
        out.sources.append(event)
    return out


__all__ = ["Encoded", "KeyFunction", "encode_events", "new_event_id"]
