"""OpenTelemetry traces and metrics for fastapi-events (``pip install fastapi-events[otel]``).

What you get, once a tracer and/or meter provider is configured:

* spans - ``send {event}`` (PRODUCER) for each ``dispatch()``, ``process {event} {handler}`` (CONSUMER) for
  each local handler function, child of the dispatch span and marked as errored with the exception when it
  raises, ``publish {destination}`` (PRODUCER) for each forwarder batch and ``process {destination}``
  (CONSUMER) for each consumed message, with the messaging semantic-convention attributes;
* trace context carried with the event without touching its payload: in process on the event tuple
  (:class:`TracedEvent`), across brokers in the message attributes/headers written by the global propagator.
  A consumer's span links to the dispatch span (``FASTAPI_EVENTS_USE_SPAN_LINKING=0``: is its child);
* metrics - events dispatched / handled / failed / dead-lettered, handler duration, forwarder queue depth and
  consumer lag.

When is it on? Nothing is done unless OpenTelemetry is importable. Instrumentation is activated when a
middleware starts (lifespan startup, or its first request if the server skips lifespan) provided the app has
imported OpenTelemetry and configured a real (SDK) provider by then, or whenever :func:`instrument` is called.
With only the API installed, or providers left at the API's defaults, no hook is installed and the hot path is
unchanged. ``FASTAPI_EVENTS_OTEL=0`` disables the automatic activation. Configure providers before the app
starts, or call :func:`instrument` after configuring them.
"""

from __future__ import annotations

from typing import Any

from .. import _hooks
from ..errors import ConfigurationError
from ._propagation import TracedEvent, extract_context, inject_headers, use_span_linking

try:
    # Probing only: the submodules that need them import them for real.
    import opentelemetry.metrics
    import opentelemetry.trace  # noqa: F401

    _AVAILABLE = True
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    _AVAILABLE = False


def instrument(
    tracer_provider: Any = None, meter_provider: Any = None, *, tracing: bool = True, metrics: bool = True
) -> bool:
    """Turn spans and metrics on (see the module docs); returns whether anything was installed.

    ``tracer_provider`` / ``meter_provider`` default to the global ones, used only when they are real SDK
    providers. Raises :class:`~fastapi_events.errors.ConfigurationError` when OpenTelemetry is not installed.
    """
    if not _AVAILABLE:
        raise ConfigurationError("OpenTelemetry is not installed: pip install 'fastapi-events[otel]'")
    from ._instrumentation import instrument as _instrument

    return _instrument(tracer_provider, meter_provider, tracing=tracing, metrics=metrics)


def auto_instrument() -> bool:
    """Called by each middleware as it starts; installs instrumentation if a real provider is configured."""
    if not _AVAILABLE:
        return False
    from ._instrumentation import auto_instrument as _auto

    return _auto()


def uninstrument() -> None:
    """Remove the instrumentation: spans and metrics stop, the hot path is back to its plain cost."""
    if _AVAILABLE:
        from ._instrumentation import uninstrument as _uninstrument

        _uninstrument()


def is_instrumented() -> bool:
    if not _AVAILABLE:
        return False
    from ._instrumentation import is_instrumented as _is_instrumented

    return _is_instrumented()


# The core never imports this plugin: it registers itself (the core loads it once the app imported OpenTelemetry).
if auto_instrument not in _hooks.on_runtime_start:
    _hooks.on_runtime_start.append(auto_instrument)
_hooks.context_extractor = extract_context

__all__ = [
    "TracedEvent",
    "auto_instrument",
    "extract_context",
    "inject_headers",
    "instrument",
    "is_instrumented",
    "uninstrument",
    "use_span_linking",
]
