"""The one wire format shared by every forwarder and consumer: JSON ``["event name", payload]``.

Payloads are encoded with a JSON encoder that knows the types FastAPI apps commonly put in events. Anything it
does not know is an error naming the event and the type - never ``pickle`` and never ``str()`` of an arbitrary
object, because a consumer must be able to decode what a producer sent without trusting it.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import os
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from ._names import event_name_str
from .errors import MalformedMessageError, SerializationError
from .typing import Event

# Message attribute names, identical for every broker so that consumers and tracing tools find them in one
# place. SQS only allows [A-Za-z0-9_.-] in attribute names; these fit every broker.
ATTR_EVENT_NAME = "event_name"
ATTR_EVENT_ID = "event_id"
ATTR_TRACEPARENT = "traceparent"
ATTR_TRACESTATE = "tracestate"
TRACE_ATTRIBUTES = (ATTR_TRACEPARENT, ATTR_TRACESTATE)

#: A user-supplied ``serializer(event) -> str | bytes`` replacing the default JSON body (as in fastapi-events
#: 0.x).
Serializer = Callable[[Event], str | bytes]


class _UnsupportedType(TypeError):
    def __init__(self, value: Any) -> None:
        self.type_name = f"{type(value).__module__}.{type(value).__qualname__}"
        super().__init__(self.type_name)


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` hook for the types events commonly carry."""
    # datetime is a subclass of date: test it first so that the time part is kept.
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, decimal.Decimal):
        # A string keeps every digit; a float would silently round money amounts.
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        try:
            # Sorted so that equal sets produce equal bodies (deduplication, tests).
            return sorted(value)
        except TypeError:
            return list(value)
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump) and not isinstance(value, type):
        return model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    raise _UnsupportedType(value)


# allow_nan=False: NaN/Infinity are not JSON and break non-Python consumers. One encoder for every call:
# ``json.dumps`` with options builds a new one each time, which costs more than encoding a small event.
_ENCODER = json.JSONEncoder(default=json_default, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _dumps(obj: Any) -> bytes:
    return _ENCODER.encode(obj).encode("utf-8")


# The C encoder behind _ENCODER, built once: ``JSONEncoder.encode`` builds one per call. Without a markers dict
# (which a shared encoder could not share between threads) a circular payload ends in RecursionError instead of
# ValueError; ``encode_bodies`` hands any failure to ``encode_event``, which says what is wrong.
_C_ENCODE: Callable[[Any, int], Any] | None = (
    c_make_encoder(None, json_default, encode_basestring, None, ":", ",", False, False, False)
    if c_make_encoder is not None
    else None
)


def encode_bodies(events: Sequence[Event], names: Sequence[str]) -> list[bytes | None]:
    """The default wire bodies of ``events`` (their names already resolved), in one pass; None for an event that
    cannot be encoded - :func:`encode_event` then raises the error that names it."""
    encode = _C_ENCODE
    if encode is None:  # pragma: no cover - an interpreter without the C accelerator
        return [_dumps([name, event[1]]) for event, name in zip(events, names, strict=True)]
    bodies: list[bytes | None] = []
    for event, name in zip(events, names, strict=True):
        try:
            bodies.append("".join(encode([name, event[1]], 0)).encode("utf-8"))
        except Exception:  # RecursionError included: reported by encode_event
            bodies.append(None)
    return bodies


def encode_payload(value: Any) -> bytes:
    """JSON-encode any value with :func:`json_default` (raises ``TypeError``/``ValueError`` on failure)."""
    return _dumps(value)


def encode_event(event: Event, serializer: Serializer | None = None) -> bytes:
    """Encode ``event`` as the message body, ``["event name", payload]`` unless ``serializer`` is given.

    Raises :class:`~fastapi_events.errors.SerializationError` naming the event and the offending type.
    """
    name = event_name_str(event[0])
    if serializer is not None:
        try:
            body = serializer(event)
        except Exception as exc:
            raise SerializationError(name, f"serializer failed: {type(exc).__name__}: {exc}") from exc
        if isinstance(body, str):
            try:
                return body.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise SerializationError(name, f"serializer returned text that is not valid UTF-8: {exc}") from exc
        if isinstance(body, (bytes, bytearray, memoryview)):
            return bytes(body)
        raise SerializationError(name, f"serializer returned {type(body).__name__}, expected str or bytes")
    try:
        return _dumps([name, event[1]])
    except _UnsupportedType as exc:
        raise SerializationError(
            name, f"payload contains a value of type {exc.type_name} (not JSON-encodable)"
        ) from exc
    except ValueError as exc:  # circular reference, NaN/Infinity
        raise SerializationError(name, f"payload is not JSON-encodable: {exc}") from exc
    except UnicodeEncodeError as exc:  # lone surrogates in strings
        raise SerializationError(name, f"payload contains text that is not valid UTF-8: {exc}") from exc
    except TypeError as exc:  # e.g. non-string dict keys of an unsupported type
        raise SerializationError(name, f"payload is not JSON-encodable: {exc}") from exc


def decode_event(body: bytes | bytearray | memoryview | str) -> Event:
    """Decode a body produced by :func:`encode_event` (default format) into ``(event_name, payload)``.

    Raises :class:`~fastapi_events.errors.MalformedMessageError` saying exactly what is wrong.
    """
    if isinstance(body, (bytearray, memoryview)):
        body = bytes(body)
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedMessageError(f"body is not valid UTF-8 ({exc.reason} at byte {exc.start})", body) from exc
    elif isinstance(body, str):
        text = body
    else:
        raise MalformedMessageError(f"body must be bytes or str, not {type(body).__name__}")
    if not text.strip():
        raise MalformedMessageError("body is empty", body)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedMessageError(
            f"body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", body
        ) from exc
    if not isinstance(value, list):
        raise MalformedMessageError(f'expected a JSON array ["event name", payload], got {type(value).__name__}', body)
    if len(value) != 2:
        raise MalformedMessageError(
            f'expected a JSON array of 2 items ["event name", payload], got {len(value)} item(s)', body
        )
    name, payload = value
    if not isinstance(name, str):
        raise MalformedMessageError(f"event name must be a JSON string, got {type(name).__name__}", body)
    if not name:
        raise MalformedMessageError("event name is empty", body)
    return (name, payload)


# One os.urandom call per _ID_CHUNK ids instead of one system call per event. The pool is emptied in a forked
# child, which would otherwise hand out the same ids as its parent.
_ID_CHUNK = 256
_id_pool: list[str] = []
os.register_at_fork(after_in_child=_id_pool.clear)


# Byte tables setting the version nibble (byte 6: 0x4_) and the RFC 4122 variant bits (byte 8: 0b10__ ____).
_VERSION_BYTE = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT_BYTE = bytes((b & 0x3F) | 0x80 for b in range(256))


def _fill_id_pool() -> None:
    # In C, a chunk at a time: translate the two fixed bytes of every id, hex the lot, slice it.
    random = bytearray(os.urandom(16 * _ID_CHUNK))
    random[6::16] = random[6::16].translate(_VERSION_BYTE)
    random[8::16] = random[8::16].translate(_VARIANT_BYTE)
    text = random.hex()
    _id_pool.extend([text[start : start + 32] for start in range(0, 32 * _ID_CHUNK, 32)])


def new_event_ids(count: int) -> list[str]:
    """``count`` fresh event ids at once (see :func:`new_event_id`)."""
    pop = _id_pool.pop
    try:
        return [pop() for _ in range(count)]  # each pop atomic, as new_event_id's
    except IndexError:  # the pool ran dry on the way (what was popped is simply not used)
        return [new_event_id() for _ in range(count)]


def new_event_id() -> str:
    """A fresh stable event id (random uuid4 hex): message id and deduplication id on every broker."""
    while True:
        try:
            return _id_pool.pop()  # atomic: threads never get the same id
        except IndexError:
            _fill_id_pool()


def trace_context(event: Event) -> dict[str, str]:
    """Trace-propagation attributes (W3C ``traceparent``/``tracestate`` by default) to send with ``event``.

    Taken from the ``trace_context`` mapping the OpenTelemetry integration attaches to events at dispatch (so the
    consumer's span links to the dispatching request) or, failing that, from the current OpenTelemetry context
    when the API is installed. Every key the configured propagator writes is kept; transports drop names their
    broker cannot carry.
    """
    carried = getattr(event, "trace_context", None)
    if isinstance(carried, Mapping):
        return {str(k): str(v) for k, v in carried.items() if v}
    return _inject_current()


_otel: tuple[Any, Any, Any, Any] | None = None


def _inject_current() -> dict[str, str]:
    # Only when the app itself loaded OpenTelemetry: importing it here would stall the event loop on the first
    # event of every app that merely has the package installed.
    global _otel
    if _otel is None:
        if "opentelemetry.trace" not in sys.modules:
            return {}
        try:
            from opentelemetry import baggage, context, propagate, trace
        except ImportError:
            return {}
        _otel = (baggage, context, propagate, trace)  # an import statement per request costs more than the rest
    baggage, context, propagate, trace = _otel
    # Without a valid span or baggage there is nothing to propagate: skip the propagators (they cost, and a web
    # framework's own context entries are not for them).
    current = context.get_current()
    if not current or (
        not trace.get_current_span(current).get_span_context().is_valid and not baggage.get_all(current)
    ):
        return {}
    carrier: dict[str, str] = {}
    try:
        propagate.inject(carrier)
    except Exception:  # a broken propagator must not stop delivery
        return {}
    return {k: v for k, v in carrier.items() if isinstance(v, str) and v}


def attributes_for(event: Event, event_id: str) -> dict[str, str]:
    """The message attributes every forwarder sends: event name, event id and trace context."""
    attributes = trace_context(event)
    # Ours last so that a propagator key can never overwrite them.
    attributes[ATTR_EVENT_NAME] = event_name_str(event[0])
    attributes[ATTR_EVENT_ID] = event_id
    return attributes


__all__ = [
    "ATTR_EVENT_ID",
    "ATTR_EVENT_NAME",
    "ATTR_TRACEPARENT",
    "ATTR_TRACESTATE",
    "TRACE_ATTRIBUTES",
    "Serializer",
    "attributes_for",
    "decode_event",
    "encode_bodies",
    "encode_event",
    "encode_payload",
    "json_default",
    "new_event_id",
    "new_event_ids",
    "trace_context",
]
