"""One id end to end: the receiver dispatches each delivery with the sender's ``webhook-id`` as the event's id, so
the receiving app's handlers see it (``event_meta``) and its forwarders send the event on under the same id - with
and without OpenTelemetry tracing (whose dispatch hook wraps every dispatched event)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette

from fastapi_events import EventHandlerASGIMiddleware, otel
from fastapi_events._event_meta import EventMeta, event_meta, stable_id
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.webhooks import WebhookEndpoint, WebhookForwardHandler, WebhookReceiver
from tests._servers import wait_for
from tests.webhooks._endpoint import SECRET, Recorder, ThreadServer
from tests.webhooks._send import events, send

pytestmark = pytest.mark.servers  # real uvicorn endpoints on loopback


@pytest.fixture(params=["plain", "traced"])
def spans(request: pytest.FixtureRequest) -> Iterator[InMemorySpanExporter | None]:
    if request.param == "plain":
        yield None
        return
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert otel.instrument(provider)
    try:
        yield exporter
    finally:
        otel.uninstrument()
        provider.shutdown()


def relay_app(next_url: str) -> tuple[Starlette, list[EventMeta]]:
    """The receiving app: records each event's metadata, and forwards every event on to ``next_url``."""
    seen: list[EventMeta] = []
    handler = LocalHandler()

    @handler.register(event_name="*")
    def record(event: tuple[str, Any]) -> None:
        seen.append(event_meta(event))

    onward = WebhookForwardHandler([WebhookEndpoint(next_url, SECRET)], allow_private_networks=True)
    app = Starlette()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[handler, onward])
    app.mount("/webhooks", WebhookReceiver(secret=SECRET).app)
    return app, seen


@pytest.mark.anyio
async def test_the_webhook_id_is_the_received_events_id_and_is_forwarded_on(
    endpoint: Callable[..., tuple[Recorder, str]],
    serve: Callable[..., ThreadServer],
    spans: InMemorySpanExporter | None,
) -> None:
    last, last_url = endpoint()
    app, seen = relay_app(last_url)
    relay = serve(app)
    sent = events("order.placed", 5)
    before = time.time()
    first = WebhookForwardHandler([WebhookEndpoint(relay.url + "/webhooks", SECRET)], allow_private_networks=True)
    await send(first, sent)
    ids = [stable_id(event) for event in sent]  # the ids the first sender gave its events

    wait_for(lambda: len(last.deliveries) >= 5, 60, message="5 events forwarded on")
    assert sorted(meta.id for meta in seen) == sorted(ids)
    assert {meta.name for meta in seen} == {"order.placed"}
    for meta in seen:
        assert meta.dispatched_at is not None
        assert before - 1 <= meta.dispatched_at <= time.time()  # the first sender's body timestamp
    assert sorted(last.ids()) == sorted(ids)  # forwarded on under the same ids
    assert sorted(json.loads(d.body)["data"]["n"] for d in last.deliveries) == [0, 1, 2, 3, 4]
    if spans is not None:
        # Tracing wrapped the received events and kept their ids; each handler span joins its dispatch's trace.
        finished = spans.get_finished_spans()
        dispatched = {s.context.trace_id for s in finished if s.name == "send order.placed"}
        handled = {s.context.trace_id for s in finished if s.name.startswith("process order.placed")}
        assert len(dispatched) == 5
        assert handled == dispatched
