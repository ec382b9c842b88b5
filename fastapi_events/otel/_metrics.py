"""Counters, the handler duration histogram and gauges, through the OpenTelemetry metrics API.

Only imported once OpenTelemetry is known to be importable and a meter provider is configured.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from .. import _runtime
from . import _attributes as attr

if TYPE_CHECKING:
    from ..delivery import ForwardHandler

_CACHE_LIMIT = 4096


class Metrics:
    """The instruments of one meter. Gauges read live state when the reader collects, from its thread."""

    def __init__(self, meter: Meter) -> None:
        self.dispatched = meter.create_counter(
            attr.METRIC_DISPATCHED, unit="{event}", description="Events passed to dispatch()"
        )
        self.handled = meter.create_counter(
            attr.METRIC_HANDLED, unit="{event}", description="Events a local handler function handled"
        )
        self.failed = meter.create_counter(
            attr.METRIC_FAILED, unit="{event}", description="Events a local handler function raised for"
        )
        self.dead_lettered = meter.create_counter(
            attr.METRIC_DEAD_LETTERED,
            unit="{event}",
            description="Events given up on by a forwarder or consumer (retry budget spent or rejected)",
        )
        self.duration = meter.create_histogram(
            attr.METRIC_HANDLER_DURATION, unit="s", description="Time a local handler function took per event"
        )
        meter.create_observable_gauge(
            attr.METRIC_QUEUE_DEPTH,
            callbacks=[self._observe_queues],
            unit="{event}",
            description="Events waiting in a forwarder's spool or memory queue for delivery",
        )
        meter.create_observable_gauge(
            attr.METRIC_CONSUMER_LAG,
            callbacks=[self._observe_lag],
            unit="{message}",
            description="Messages not yet consumed, as reported by the broker",
        )
        # Cleared when instrumentation is removed: the SDK has no way to unregister gauge callbacks.
        self.active = True
        self._lag: dict[tuple[str, str, str], int] = {}
        self._lag_lock = threading.Lock()
        self._event_attrs: dict[str, dict[str, str]] = {}
        self._handler_attrs: dict[tuple[str, str], dict[str, str]] = {}

    # -- attribute sets: cached, building dicts per event shows in the per-event cost ---------------------
    def event_attributes(self, event_name: str) -> dict[str, str]:
        found = self._event_attrs.get(event_name)
        if found is None:
            if len(self._event_attrs) >= _CACHE_LIMIT:
                self._event_attrs.clear()
            found = self._event_attrs[event_name] = {attr.EVENT_NAME: event_name}
        return found

    def handler_attributes(self, event_name: str, handler: str) -> dict[str, str]:
        key = (event_name, handler)
        found = self._handler_attrs.get(key)
        if found is None:
            if len(self._handler_attrs) >= _CACHE_LIMIT:
                self._handler_attrs.clear()
            found = self._handler_attrs[key] = {attr.EVENT_NAME: event_name, attr.HANDLER: handler}
        return found

    # -- recording ----------------------------------------------------------------------------------------
    def record_handled(self, event_name: str, handler: str, seconds: float, failed: bool) -> None:
        attributes = self.handler_attributes(event_name, handler)
        (self.failed if failed else self.handled).add(1, attributes)
        self.duration.record(seconds, attributes)

    def record_dead_letter(self, event_name: str, where: str, reason: str) -> None:
        self.dead_lettered.add(1, self.handler_attributes(event_name, where))

    def record_lag(self, system: str, destination: str, partition: str, lag: int) -> None:
        with self._lag_lock:
            self._lag[(system, destination, partition)] = lag

    # -- gauges -------------------------------------------------------------------------------------------
    def _observe_queues(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self.active:
            return []
        observations: list[Observation] = []
        for handler, system, destination in _forwarders():
            try:
                queued = int(handler.stats.queued)
            except Exception:  # a forwarder being shut down; it reports again next time
                continue
            labels = {attr.MESSAGING_SYSTEM: system, attr.MESSAGING_DESTINATION_NAME: destination}
            observations.append(Observation(queued, labels))
        return observations

    def _observe_lag(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self.active:
            return []
        with self._lag_lock:
            items = list(self._lag.items())
        return [
            Observation(
                lag,
                {
                    attr.MESSAGING_SYSTEM: system,
                    attr.MESSAGING_DESTINATION_NAME: destination,
                    attr.CONSUMER_PARTITION: partition,
                },
            )
            for (system, destination, partition), lag in items
        ]


def _forwarders() -> list[tuple[ForwardHandler, str, str]]:
    """Every forwarder of every live middleware, with its transport's system and destination."""
    # Imported on first use: an app that forwards nothing need not load the delivery layer for its metrics.
    from ..delivery import ForwardHandler

    found: list[tuple[ForwardHandler, str, str]] = []
    seen: set[int] = set()
    try:
        runtimes = _runtime.all_runtimes()
    except RuntimeError:  # a middleware created or collected while the reader's thread iterated
        return found
    for runtime in runtimes:
        for handler in runtime.handlers:
            if not isinstance(handler, ForwardHandler) or id(handler) in seen:
                continue
            seen.add(id(handler))
            found.append((handler, str(handler.transport.system), str(handler.transport.destination)))
    return found


__all__ = ["Metrics"]
