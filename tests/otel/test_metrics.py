"""Metrics through the OpenTelemetry metrics API, read back with the SDK's in-memory reader."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from fastapi_events import _hooks, dispatch
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.otel import _attributes as attr
from fastapi_events.testing import InMemoryBroker

from .conftest import Telemetry


def _app(*handlers: Any, events: list[str]) -> FastAPI:
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=list(handlers))

    @app.get("/")
    async def root() -> None:
        for name in events:
            dispatch(name, payload={})

    return app


def test_dispatched_handled_failed_and_duration(telemetry: Telemetry) -> None:
    handler = LocalHandler()

    @handler.register("order.*")
    async def ok(event: Any) -> None:
        return None

    @handler.register("order.paid")
    def broken(event: Any) -> None:
        raise RuntimeError("nope")

    with TestClient(_app(handler, events=["order.paid", "order.paid", "order.sent"])) as client:
        client.get("/")
        client.get("/")

    ok_name = f"{ok.__module__}.{ok.__qualname__}"
    broken_name = f"{broken.__module__}.{broken.__qualname__}"
    dispatched = {p[0][attr.EVENT_NAME]: p[1] for p in telemetry.points(attr.METRIC_DISPATCHED)}
    assert dispatched == {"order.paid": 4, "order.sent": 2}
    handled = {(p[0][attr.EVENT_NAME], p[0][attr.HANDLER]): p[1] for p in telemetry.points(attr.METRIC_HANDLED)}
    assert handled == {("order.paid", ok_name): 4, ("order.sent", ok_name): 2}
    failed = {(p[0][attr.EVENT_NAME], p[0][attr.HANDLER]): p[1] for p in telemetry.points(attr.METRIC_FAILED)}
    assert failed == {("order.paid", broken_name): 4}
    durations = {
        (p[0][attr.EVENT_NAME], p[0][attr.HANDLER]): p[1] for p in telemetry.points(attr.METRIC_HANDLER_DURATION)
    }
    assert durations == {
        ("order.paid", ok_name): 4,
        ("order.sent", ok_name): 2,
        ("order.paid", broken_name): 4,
    }


def test_dead_lettered_counted_per_event_and_forwarder(telemetry: Telemetry) -> None:
    broker = InMemoryBroker()
    broker.fail_next("events-queue", 3, permanent=True)
    forwarder = broker.forwarder("events-queue")
    with TestClient(_app(forwarder, events=["bad.one", "bad.one", "bad.two"])) as client:
        client.get("/")
    assert forwarder.stats.dead_lettered == 3
    dead = {(p[0][attr.EVENT_NAME], p[0][attr.HANDLER]): p[1] for p in telemetry.points(attr.METRIC_DEAD_LETTERED)}
    assert dead == {("bad.one", repr(forwarder)): 2, ("bad.two", repr(forwarder)): 1}


def test_consumer_dead_letters_counted(telemetry: Telemetry) -> None:
    broker = InMemoryBroker()
    with TestClient(_app(broker.forwarder("events-queue"), events=["nobody.listens", "known"])) as client:
        client.get("/")
    worker = LocalHandler()
    worker.register(lambda event: None, event_name="known")
    report = asyncio.run(broker.consume("events-queue", worker))
    assert report.handled == 1
    assert report.reasons == {"unknown": 1}  # dead-lettered by the Consumer
    dead = {(p[0][attr.EVENT_NAME], p[0][attr.HANDLER]): p[1] for p in telemetry.points(attr.METRIC_DEAD_LETTERED)}
    assert dead == {("nobody.listens", "Consumer(memory:events-queue)"): 1}


def test_queue_depth_gauge_reads_live_forwarders(telemetry: Telemetry) -> None:
    broker = InMemoryBroker()
    forwarder = broker.forwarder("slow-queue", reconnect_max_delay=0.1)
    app = _app(forwarder, events=["q.a", "q.b", "q.c"])
    with TestClient(app) as client, broker.unreachable("slow-queue"):
        client.get("/")
        depth = [
            p
            for p in telemetry.points(attr.METRIC_QUEUE_DEPTH)
            if p[0][attr.MESSAGING_DESTINATION_NAME] == "slow-queue"
        ]
        assert depth == [({attr.MESSAGING_SYSTEM: "memory", attr.MESSAGING_DESTINATION_NAME: "slow-queue"}, 3)]
    depth = [
        p for p in telemetry.points(attr.METRIC_QUEUE_DEPTH) if p[0][attr.MESSAGING_DESTINATION_NAME] == "slow-queue"
    ]
    assert depth == [({attr.MESSAGING_SYSTEM: "memory", attr.MESSAGING_DESTINATION_NAME: "slow-queue"}, 0)]


def test_consumer_lag_hook(telemetry: Telemetry) -> None:
    _hooks.consumer_lag("kafka", "orders", "3", 42)
    _hooks.consumer_lag("kafka", "orders", "3", 40)
    _hooks.consumer_lag("kafka", "orders", "4", 0)
    points = telemetry.points(attr.METRIC_CONSUMER_LAG)
    by_partition = {p[0][attr.CONSUMER_PARTITION]: p[1] for p in points}
    assert by_partition == {"3": 40, "4": 0}
    assert all(p[0][attr.MESSAGING_SYSTEM] == "kafka" for p in points)
    assert all(p[0][attr.MESSAGING_DESTINATION_NAME] == "orders" for p in points)


def test_metrics_only_without_a_tracer(telemetry: Telemetry) -> None:
    from fastapi_events import otel

    assert otel.instrument(meter_provider=telemetry.meter_provider, tracing=False)
    handler = LocalHandler()
    got: list[Any] = []

    @handler.register("m")
    async def keep(event: Any) -> None:
        got.append(event)

    with TestClient(_app(handler, events=["m"])) as client:
        client.get("/")
    assert type(got[0]) is tuple  # no trace context to carry
    assert telemetry.spans() == []
    assert not _hooks.on_forward_batch
    assert not _hooks.on_consume
    assert [p[1] for p in telemetry.points(attr.METRIC_HANDLED)] == [1]
