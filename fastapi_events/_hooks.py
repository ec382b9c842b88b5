"""Process-wide observers of ``dispatch()``, handlers, forwarders and consumers: test capture and telemetry.

Kept as plain module globals that the hot paths check for emptiness, so that they cost nothing when unused.
:mod:`fastapi_events.otel` fills them when OpenTelemetry is active; the delivery layer and consumers call the
small helpers below, which return a shared no-op context manager while the lists are empty.

The core never imports a plugin: a plugin registers itself here (:data:`on_runtime_start`,
:data:`context_extractor`) when it is imported, and :func:`runtime_starting` loads the OpenTelemetry plugin by
name, as an entry, once the app has imported OpenTelemetry.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from typing import Any

from .typing import Event

#: Lists receiving every dispatched event (see :mod:`fastapi_events.testing`).
recorders: list[list[Event]] = []

#: Called with each event before it is buffered; returns the event to buffer (tracing attaches context here).
on_dispatch: list[Callable[[Event], Event]] = []

#: ``hook(event, handler_name)`` -> context manager entered around one local handler function handling one
#: event; it sees the function's exception before the failure is reported.
on_handle: list[Callable[[Event, str], AbstractContextManager[Any]]] = []

#: ``hook(system, destination, messages)`` -> context manager around one forwarder batch send.
on_forward_batch: list[Callable[[str, str, Sequence[Any]], AbstractContextManager[Any]]] = []

#: ``hook(system, destination, message_id, event_name, headers)`` -> context manager around a consumer's
#: handling of one received message (headers: the message attributes, trace context included).
on_consume: list[Callable[[str, str, str, str, Mapping[str, str]], AbstractContextManager[Any]]] = []

#: ``hook(event_name, where, reason)`` once per dead-lettered event (``where``: forwarder or consumer).
on_dead_letter: list[Callable[[str, str, str], None]] = []

#: ``hook(system, destination, partition, lag)``: a consumer's backlog, when the broker reports it.
on_consumer_lag: list[Callable[[str, str, str, int], None]] = []

#: ``hook(event, handler_name, exc)`` when a handler failed on an event (reported through ``report_failure``, or
#: caught by a consumer that retries it): the failure path only, so that recording outcomes costs nothing per
#: successful event.
on_handler_failure: list[Callable[[Event, str, BaseException], None]] = []

#: Non-empty while something reads handler run times since start (the inspector's history puts a token here):
#: ``LocalHandler`` then times each run into its registration's :class:`~fastapi_events._latency.Latency`, one
#: clock pair and a bucket count, instead of the context managers of :data:`on_handle`.
time_handlers: list[object] = []

#: Called by :func:`runtime_starting` (OpenTelemetry: install the instrumentation if a provider is configured).
on_runtime_start: list[Callable[[], object]] = []

#: ``extractor(carrier)`` -> the trace context propagated in an event's headers (set by the OpenTelemetry plugin).
context_extractor: Callable[[Mapping[str, str]], Any] | None = None

#: The plugin loaded once its library is in use, and the modules that say it is.
_OTEL_PLUGIN = "fastapi_events.otel"
_OTEL_MODULES = ("opentelemetry.trace", "opentelemetry.metrics")

#: ``hook(app)`` when a middleware's app starts (lifespan), with ``scope["app"]`` (the Starlette/FastAPI app).
on_app_start: list[Callable[[Any], None]] = []

_NULL: AbstractContextManager[Any] = nullcontext()


def _combine(managers: list[AbstractContextManager[Any]]) -> AbstractContextManager[Any]:
    if len(managers) == 1:
        return managers[0]
    stack = ExitStack()
    for manager in managers:
        stack.enter_context(manager)
    return stack


def observe_handler(event: Event, handler_name: str) -> AbstractContextManager[Any]:
    if not on_handle:
        return _NULL
    return _combine([hook(event, handler_name) for hook in on_handle])


def forward_batch(system: str, destination: str, messages: Sequence[Any]) -> AbstractContextManager[Any]:
    """Wrap a forwarder's ``transport.send_batch(messages)`` in this (a span, when tracing is on)."""
    if not on_forward_batch:
        return _NULL
    return _combine([hook(system, destination, messages) for hook in on_forward_batch])


def consume(
    system: str, destination: str, message_id: str, event_name: str, headers: Mapping[str, str]
) -> AbstractContextManager[Any]:
    """Wrap a consumer's handling of one message in this; handlers run inside it see its trace context."""
    if not on_consume:
        return _NULL
    return _combine([hook(system, destination, message_id, event_name, headers) for hook in on_consume])


def handler_failed(event: Event, handler_name: str, exc: BaseException) -> None:
    for hook in on_handler_failure:
        hook(event, handler_name, exc)


def dead_lettered(event_name: str, where: str, reason: str) -> None:
    for hook in on_dead_letter:
        hook(event_name, where, reason)


def consumer_lag(system: str, destination: str, partition: str, lag: int) -> None:
    for hook in on_consumer_lag:
        hook(system, destination, partition, lag)


def app_starting(app: Any) -> None:
    """Called by each middleware with its app (``scope["app"]``) at lifespan startup, or on its first request."""
    for hook in on_app_start:
        hook(app)


def runtime_starting() -> None:
    """Called once by each middleware, at lifespan startup or on its first request, whichever comes first."""
    # A tracer or meter provider cannot be configured without importing opentelemetry, so an app that never
    # imported it has nothing to instrument and does not pay for the import.
    if _OTEL_PLUGIN not in sys.modules and any(name in sys.modules for name in _OTEL_MODULES):
        importlib.import_module(_OTEL_PLUGIN)  # registers its hooks
    for hook in on_runtime_start:
        hook()
