"""The inspector and OpenTelemetry share the hooks: both see every event, whichever was installed first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fastapi_events import drain, otel

from ._app import make_app
from .conftest import ClientFactory

pytestmark = pytest.mark.anyio


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    otel.uninstrument()
    provider.shutdown()


@pytest.mark.parametrize("otel_first", [True, False])
async def test_tracing_and_the_inspector_both_record_handler_runs(
    client_for: ClientFactory, tracing: tuple[TracerProvider, InMemorySpanExporter], otel_first: bool
) -> None:
    tracer_provider, spans = tracing
    app = make_app()
    async with client_for(app) as client:
        if otel_first:
            assert otel.instrument(tracer_provider, metrics=False)
        await client.get("/_events/api/events")  # the page opens
        if not otel_first:
            # Tracing turned on while the page is open: its wrapped events must still be matched to their
            # handler runs (the page's next poll puts the inspector's hook last again).
            assert otel.instrument(tracer_provider, metrics=False)
            await client.get("/_events/api/events")
        await client.post("/events/payment.captured", json=[{"fail": True}])
        await drain(5)
        events = (await client.get("/_events/api/events")).json()["events"]
    (event,) = events
    assert event["outcome"] == "failed"
    assert [run["handler"].rsplit(".", 1)[1] for run in event["handlers"]] == ["charge"]
    names = [span.name for span in spans.get_finished_spans()]
    assert any(name.startswith("send payment.captured") for name in names), names
    assert any(name.startswith("process payment.captured") for name in names), names
