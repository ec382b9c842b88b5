"""In-memory OpenTelemetry SDK providers, installed explicitly so tests never touch the global providers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fastapi_events import _hooks, otel


@dataclass
class Telemetry:
    tracer_provider: TracerProvider
    exporter: InMemorySpanExporter
    meter_provider: MeterProvider
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.name == name]
        assert len(found) == 1, (name, [s.name for s in self.spans()])
        return found[0]

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        """``(attributes, value)`` per data point; histograms give their ``count``."""
        data = self.reader.get_metrics_data()
        out: list[tuple[dict[str, Any], Any]] = []
        for resource in data.resource_metrics if data is not None else []:
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name != metric:
                        continue
                    for point in m.data.data_points:
                        value = point.count if hasattr(point, "count") else point.value  # type: ignore[union-attr]
                        out.append((dict(point.attributes or {}), value))
        return out


def _hooks_empty() -> bool:
    """No OpenTelemetry hook is left (an event inspector of an app still alive keeps its history's hooks)."""
    lists = (
        _hooks.on_dispatch,
        _hooks.on_handle,
        _hooks.on_forward_batch,
        _hooks.on_consume,
        _hooks.on_dead_letter,
        _hooks.on_consumer_lag,
    )
    return not [h for hooks in lists for h in hooks if not getattr(h, "__module__", "").startswith(_INSPECTOR)]


_INSPECTOR = "fastapi_events.inspector"


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    assert otel.instrument(tracer_provider, meter_provider)
    try:
        yield Telemetry(tracer_provider, exporter, meter_provider, reader)
    finally:
        otel.uninstrument()
        assert _hooks_empty()
        tracer_provider.shutdown()
        meter_provider.shutdown()
