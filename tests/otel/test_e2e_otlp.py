"""End to end over OTLP: the app exports to a real collector (rotel) started by the suite, and the spans it
received show the request, dispatch, local handler, forwarder batch and consumer in one trace."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from fastapi_events import dispatch, otel
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.testing import InMemoryBroker
from tests._servers import wait_for

from ._rotel import ReceivedSpan, RotelServer, parse_spans


@pytest.fixture
def rotel() -> Iterator[RotelServer]:
    server = RotelServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def exporting_provider(rotel: RotelServer) -> Iterator[TracerProvider]:
    provider = TracerProvider(resource=Resource.create({"service.name": "fastapi-events-e2e"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=rotel.traces_endpoint, timeout=5)))
    assert otel.instrument(tracer_provider=provider)
    try:
        yield provider
    finally:
        otel.uninstrument()
        provider.shutdown()


def test_request_dispatch_forward_and_consumer_share_one_trace(
    rotel: RotelServer, exporting_provider: TracerProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = InMemoryBroker()
    in_process = LocalHandler()

    @in_process.register("order.*")
    async def audit(event: Any) -> None:
        return None

    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[in_process, broker.forwarder("e2e-queue")])
    tracer = exporting_provider.get_tracer("e2e-server")

    @app.post("/orders")
    async def create_order() -> dict[str, int]:
        # Stands in for the server instrumentation's request span.
        with tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER):
            dispatch("order.created", payload={"order": 1})
            dispatch("order.audited", payload={"order": 1})
        return {"order": 1}

    with TestClient(app) as client:
        assert client.post("/orders").status_code == 200

    worker = LocalHandler()

    @worker.register("order.*")
    async def fulfil(event: Any) -> None:
        return None

    # Through the real Consumer runner: the first message continues the request's trace (parent), the second
    # links to it (the default).
    first, second = broker.snapshot("e2e-queue").waiting
    monkeypatch.setenv("FASTAPI_EVENTS_USE_SPAN_LINKING", "0")
    assert asyncio.run(broker.consume("e2e-queue", worker, max_messages=1)).handled == 1
    monkeypatch.delenv("FASTAPI_EVENTS_USE_SPAN_LINKING")
    assert asyncio.run(broker.consume("e2e-queue", worker)).handled == 1
    assert exporting_provider.force_flush(10_000)

    def received() -> list[ReceivedSpan] | None:
        spans = parse_spans(rotel.read_log())
        consumer = [s for s in spans if s.name == "process e2e-queue"]
        return spans if len(consumer) == 2 else None

    spans = wait_for(received, timeout=15, message="rotel did not print the consumer spans")
    by_name: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)

    (request,) = by_name["POST /orders"]
    (sent_created,) = by_name["send order.created"]
    (sent_audited,) = by_name["send order.audited"]
    (forward,) = by_name["publish e2e-queue"]
    continued, linked = sorted(by_name["process e2e-queue"], key=lambda s: s.parent_id == "")
    audit_name = f"process order.created {audit.__module__}.{audit.__qualname__}"
    fulfil_name = f"process order.created {fulfil.__module__}.{fulfil.__qualname__}"
    (audited,) = by_name[audit_name]
    (fulfilled,) = by_name[fulfil_name]

    trace_id = request.trace_id
    assert request.kind == "SPAN_KIND_SERVER"
    # One trace: request -> dispatch -> in-process handler, the forwarder batch and the continued consumer.
    for span in (sent_created, sent_audited, audited, forward, continued, fulfilled):
        assert span.trace_id == trace_id, span
    assert sent_created.kind == sent_audited.kind == "SPAN_KIND_PRODUCER"
    assert sent_created.parent_id == sent_audited.parent_id == request.span_id
    assert audited.kind == "SPAN_KIND_CONSUMER"
    assert audited.parent_id == sent_created.span_id
    assert forward.kind == "SPAN_KIND_PRODUCER"
    assert forward.attributes["messaging.batch.message_count"] == "2"  # one batch with both
    assert forward.attributes["messaging.system"] == "memory"
    assert forward.attributes["messaging.operation.type"] == "publish"
    assert set(forward.links) == {(trace_id, sent_created.span_id), (trace_id, sent_audited.span_id)}
    assert continued.kind == "SPAN_KIND_CONSUMER"
    assert continued.parent_id == sent_created.span_id
    assert continued.attributes["messaging.message.id"] == first
    assert continued.attributes["messaging.destination.name"] == "e2e-queue"
    assert fulfilled.parent_id == continued.span_id
    # The default: a trace of its own, linked to the dispatch span of the request's trace.
    assert linked.parent_id == ""
    assert linked.trace_id != trace_id
    assert linked.links == [(trace_id, sent_audited.span_id)]
    assert linked.attributes["messaging.message.id"] == second
