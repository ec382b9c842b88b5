"""Outbox events keep their trace: a relay's handler spans join the trace of the request that committed them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from opentelemetry.trace import SpanKind

from fastapi_events.handlers.local import LocalHandler
from tests._servers import wait_for
from tests.outbox._app import Recorder, create_orders, make_app

from .conftest import Telemetry


def test_relay_handler_spans_join_the_trace_of_the_committing_request(telemetry: Telemetry, tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    create_orders(engine)
    writer, _ = make_app(engine, [Recorder()], relay=False)  # this process only writes
    tracer = telemetry.tracer_provider.get_tracer("test-server")
    inner = writer.build_middleware_stack()

    async def traced(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        with tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER):
            await inner(scope, receive, send)

    with TestClient(traced) as client:
        assert client.post("/orders/1").status_code == 200
    request = telemetry.span("POST /orders")

    local = LocalHandler()
    handled: list[Any] = []

    @local.register(event_name="order.*")
    async def on_order(event: Any) -> None:
        handled.append(event)

    relay, _ = make_app(engine, [local], poll_interval=0.05)  # delivers outside any request of its own
    with TestClient(relay):
        wait_for(lambda: handled, timeout=20)
    processed = telemetry.span(f"process order.placed {on_order.__module__}.{on_order.__qualname__}")
    assert processed.context.trace_id == request.context.trace_id
