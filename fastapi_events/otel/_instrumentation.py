"""Installing and removing the hooks that feed spans and metrics, and deciding whether to.

Deciding: tracing is on when a tracer provider other than the API's default proxy / no-op one is configured
(globally with ``trace.set_tracer_provider`` or passed to :func:`instrument`); metrics likewise with the meter
provider. The check runs when :func:`instrument` is called and, automatically, when a middleware starts
(lifespan startup, or its first request when the server skips lifespan) - and only if the app has imported
OpenTelemetry by then. Without a real provider nothing is installed and dispatch/handling run exactly as
without OpenTelemetry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from .. import _hooks
from .._names import event_name_str
from ..typing import Event
from ..utils import strtobool
from . import _attributes as attr
from ._metrics import Metrics
from ._tracing import ActiveSpan, Tracing

logger = logging.getLogger("fastapi_events.otel")

#: ``FASTAPI_EVENTS_OTEL=0`` turns the automatic activation off (an explicit :func:`instrument` still works).
FASTAPI_EVENTS_OTEL_ENV_VAR = "FASTAPI_EVENTS_OTEL"

_perf_counter = time.perf_counter


class _HandlerScope:
    """Context manager around one local handler call: span, duration, handled/failed count."""

    __slots__ = ("_active", "_event", "_event_name", "_handler", "_observer", "_start")

    def __init__(self, observer: Observer, event: Event, handler: str) -> None:
        self._observer = observer
        self._event = event
        self._event_name = event_name_str(event[0])
        self._handler = handler
        self._active: ActiveSpan | None = None
        self._start = 0.0

    def __enter__(self) -> None:
        tracing = self._observer.tracing
        if tracing is not None:
            self._active = tracing.handler(self._event, self._event_name, self._handler)
        self._start = _perf_counter()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        elapsed = _perf_counter() - self._start
        if self._active is not None:
            self._active.close(exc)
        metrics = self._observer.metrics
        if metrics is not None:
            metrics.record_handled(self._event_name, self._handler, elapsed, exc is not None)


class _SpanScope:
    """Context manager closing an :class:`ActiveSpan` (forwarder batch, consumed message)."""

    __slots__ = ("_active",)

    def __init__(self, active: ActiveSpan) -> None:
        self._active = active

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._active.close(exc)


class Observer:
    """One installation: the hooks registered in :mod:`fastapi_events._hooks` for a tracer and/or meter."""

    def __init__(self, tracing: Tracing | None, metrics: Metrics | None) -> None:
        self.tracing = tracing
        self.metrics = metrics
        self.providers: tuple[Any, Any] = (None, None)  # (tracer provider, meter provider) in use
        self._registered: list[tuple[list[Any], Any]] = []

    # -- hooks --------------------------------------------------------------------------------------------
    def on_dispatch(self, event: Event) -> Event:
        name = event_name_str(event[0])
        if self.metrics is not None:
            self.metrics.dispatched.add(1, self.metrics.event_attributes(name))
        if self.tracing is not None:
            return self.tracing.dispatch(name, event)
        return event

    def on_handle(self, event: Event, handler: str) -> _HandlerScope:
        return _HandlerScope(self, event, handler)

    def on_forward_batch(self, system: str, destination: str, messages: Sequence[Any]) -> _SpanScope:
        assert self.tracing is not None
        return _SpanScope(self.tracing.forward_batch(system, destination, messages))

    def on_consume(
        self, system: str, destination: str, message_id: str, event_name: str, headers: Mapping[str, str]
    ) -> _SpanScope:
        assert self.tracing is not None
        return _SpanScope(self.tracing.consume(system, destination, message_id, event_name, headers))

    # -- (un)registering ----------------------------------------------------------------------------------
    def install(self) -> None:
        self._add(_hooks.on_dispatch, self.on_dispatch)
        self._add(_hooks.on_handle, self.on_handle)
        if self.tracing is not None:
            self._add(_hooks.on_forward_batch, self.on_forward_batch)
            self._add(_hooks.on_consume, self.on_consume)
        if self.metrics is not None:
            self._add(_hooks.on_dead_letter, self.metrics.record_dead_letter)
            self._add(_hooks.on_consumer_lag, self.metrics.record_lag)

    def _add(self, hooks: list[Any], hook: Any) -> None:
        # In place: the hot paths hold aliases of these lists.
        hooks.append(hook)
        self._registered.append((hooks, hook))

    def uninstall(self) -> None:
        for hooks, hook in self._registered:
            for index, registered in enumerate(hooks):
                if registered == hook:  # bound methods compare equal, not identical
                    del hooks[index]
                    break
        self._registered.clear()
        if self.metrics is not None:
            self.metrics.active = False


_installed: Observer | None = None
_explicit = False


def is_real_tracer_provider(provider: Any) -> bool:
    """False for the API's placeholder providers (nothing configured, or explicitly no-op)."""
    placeholders = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    return provider is not None and not isinstance(provider, placeholders)


def is_real_meter_provider(provider: Any) -> bool:
    if provider is None or isinstance(provider, otel_metrics.NoOpMeterProvider):
        return False
    # The API's stand-in before a provider is set is private; match exactly that class, not vendor proxies.
    cls = type(provider)
    return (cls.__module__, cls.__name__) != ("opentelemetry.metrics._internal", "_ProxyMeterProvider")


def instrument(
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    *,
    tracing: bool = True,
    metrics: bool = True,
) -> bool:
    """Turn on spans and metrics for every middleware, forwarder and consumer of this process.

    Providers default to the global ones and are only used when they are real (an SDK provider, not the
    API's default proxy or no-op). Calling again replaces the previous installation. Returns whether anything
    was installed. An explicit call wins over the automatic activation done when middlewares start.
    """
    global _explicit
    installed = _install(tracer_provider, meter_provider, tracing=tracing, metrics=metrics)
    _explicit = installed
    return installed


def auto_instrument() -> bool:
    """What a starting middleware calls: install unless done explicitly, disabled or nothing configured."""
    if _installed is not None and _explicit:
        return True
    if not strtobool(os.environ.get(FASTAPI_EVENTS_OTEL_ENV_VAR, "1")):
        return False
    return _install(None, None, tracing=True, metrics=True)


def _install(
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    *,
    tracing: bool,
    metrics: bool,
) -> bool:
    global _installed
    tp = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    mp = meter_provider if meter_provider is not None else otel_metrics.get_meter_provider()
    use_tracing = tracing and is_real_tracer_provider(tp)
    use_metrics = metrics and is_real_meter_provider(mp)
    providers = (tp if use_tracing else None, mp if use_metrics else None)
    if _installed is not None and _same(_installed.providers, providers):
        # Every middleware start lands here: keep the hooks (and the instruments) already in place.
        return True
    uninstrument()
    if not (use_tracing or use_metrics):
        return False
    from .. import __version__

    observer = Observer(
        Tracing(tp.get_tracer(attr.INSTRUMENTATION_NAME, __version__)) if use_tracing else None,
        _metrics_for(mp) if use_metrics else None,
    )
    observer.providers = providers
    observer.install()
    _installed = observer
    logger.debug("OpenTelemetry instrumentation on (tracing=%s, metrics=%s)", use_tracing, use_metrics)
    return True


def _same(a: tuple[Any, Any], b: tuple[Any, Any]) -> bool:
    return a[0] is b[0] and a[1] is b[1]


# The SDK cannot remove instruments from a meter: re-instrumenting with the same provider reuses them instead of
# registering duplicates (which the SDK warns about, and whose gauge callbacks would all keep running).
_metrics_by_provider: weakref.WeakKeyDictionary[Any, Metrics] = weakref.WeakKeyDictionary()


def _metrics_for(provider: MeterProvider) -> Metrics:
    from .. import __version__

    try:
        found = _metrics_by_provider.get(provider)
    except TypeError:  # a provider that cannot be weakly referenced: no reuse
        found = None
    if found is None:
        found = Metrics(provider.get_meter(attr.INSTRUMENTATION_NAME, __version__))
        with contextlib.suppress(TypeError):
            _metrics_by_provider[provider] = found
    found.active = True
    return found


def uninstrument() -> None:
    """Remove every hook installed by :func:`instrument` or the automatic activation."""
    global _installed, _explicit
    if _installed is not None:
        _installed.uninstall()
    _installed = None
    _explicit = False


def is_instrumented() -> bool:
    return _installed is not None


def current() -> Observer | None:
    return _installed


__all__ = [
    "FASTAPI_EVENTS_OTEL_ENV_VAR",
    "Observer",
    "auto_instrument",
    "current",
    "instrument",
    "is_instrumented",
    "is_real_meter_provider",
    "is_real_tracer_provider",
    "uninstrument",
]
