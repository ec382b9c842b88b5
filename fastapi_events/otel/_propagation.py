"""Trace context that travels with an event without touching its payload.

In process an event is a :class:`TracedEvent`: still a 2-tuple ``(name, payload)`` that unpacks, compares
and hashes like the plain tuple, with the dispatch span's context as an attribute. Across a broker the context
goes in the message attributes/headers, written and read by the globally configured propagator
(``opentelemetry.propagate``): W3C ``traceparent``/``tracestate`` by default, whatever the app set up else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..constants import FASTAPI_EVENTS_USE_SPAN_LINKING_ENV_VAR
from ..typing import Event, EventName
from ..utils import strtobool

try:
    from opentelemetry import propagate as _propagate
    from opentelemetry.context import Context
except ImportError:  # the [otel] extra is not installed: nothing to propagate
    _propagate = None  # type: ignore[assignment]
    Context = Any  # type: ignore[assignment,misc]


class TracedEvent(tuple):  # type: ignore[type-arg]
    """``(name, payload)`` plus the OpenTelemetry context of the span that dispatched it.

    A tuple subclass (not a 3-tuple) so that ``event_name, payload = event``, equality with plain tuples and
    ``len(event) == 2`` keep working in handlers written for plain events.
    """

    # Tuple subclasses cannot have non-empty __slots__, hence the instance dict.
    otel_context: Context

    def __new__(cls, name: EventName, payload: Any, context: Context) -> TracedEvent:
        self = super().__new__(cls, (name, payload))
        self.otel_context = context
        return self

    @property
    def trace_context(self) -> dict[str, str]:
        """The propagation headers for this event (read by the codec when a forwarder builds a message)."""
        carrier: dict[str, str] | None = self.__dict__.get("_carrier")
        if carrier is None:
            carrier = _inject(self.otel_context)
            self.__dict__["_carrier"] = carrier
        return dict(carrier)

    def __reduce__(self) -> tuple[Any, ...]:
        # A context holds live spans: pickling (multiprocessing, caches) carries the plain event only.
        return (tuple, ((self[0], self[1]),))

    def __copy__(self) -> TracedEvent:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TracedEvent:
        import copy

        return TracedEvent(self[0], copy.deepcopy(self[1], memo), self.otel_context)


def _inject(context: Context | None) -> dict[str, str]:
    if _propagate is None:
        return {}
    carrier: dict[str, str] = {}
    try:
        _propagate.inject(carrier, context=context)
    except Exception:  # a broken propagator must never stop delivery
        return {}
    return carrier


def inject_headers(event: Event) -> dict[str, str]:
    """Propagation headers (``traceparent``, ...) for ``event``: its dispatch context if it carries one,
    else the current context. Empty when OpenTelemetry is not installed or nothing is being traced."""
    context = getattr(event, "otel_context", None)
    if context is not None:
        return dict(event.trace_context) if isinstance(event, TracedEvent) else _inject(context)
    return _inject(None)


def extract_context(headers: Mapping[str, Any] | None) -> Context | None:
    """The context propagated in a received message's attributes/headers (``None`` without OpenTelemetry).

    Values may be ``bytes`` (Kafka headers) and keys any case (some brokers change it).
    """
    if _propagate is None:
        return None
    carrier: dict[str, str] = {}
    for key, value in (headers or {}).items():
        if isinstance(value, (bytes, bytearray, memoryview)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                continue
        if isinstance(value, str):
            carrier[str(key).lower()] = value
    try:
        return _propagate.extract(carrier)
    except Exception:  # malformed headers from another producer: treat as "no context"
        return None


def use_span_linking() -> bool:
    """Whether a consumer's span *links* to the dispatching trace (default) rather than continuing it.

    ``FASTAPI_EVENTS_USE_SPAN_LINKING=0`` makes the consumer span a child of the dispatch span instead; read
    on every message so that it can be changed without restarting instrumentation.
    """
    value = os.environ.get(FASTAPI_EVENTS_USE_SPAN_LINKING_ENV_VAR)
    if value is None or not value.strip():
        return True
    return strtobool(value)


__all__ = ["TracedEvent", "extract_context", "inject_headers", "use_span_linking"]
