"""End to end: a FastAPI app with the middleware forwards what its routes dispatch to Pub/Sub."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import fastapi_events
from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.gcp import GoogleCloudSimplePubSubHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from tests._servers import PubSubEmulator


def make_app(handler: GoogleCloudSimplePubSubHandler) -> FastAPI:
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[handler])

    @app.post("/orders/{order_id}")
    async def place_order(order_id: int) -> dict[str, int]:
        dispatch("order.placed", {"order_id": order_id})
        dispatch("order.paid", payload={"order_id": order_id, "amount": "9.99"})
        return {"order_id": order_id}

    @app.get("/sync/{n}")
    def sync_route(n: int) -> dict[str, int]:
        dispatch("sync.called", {"n": n})
        return {"n": n}

    return app


@pytest.mark.anyio
@pytest.mark.servers
async def test_routes_forward_through_the_middleware(pubsub_env: PubSubEmulator, consumer_factory: Any) -> None:
    consumer = consumer_factory()
    handler = GoogleCloudSimplePubSubHandler(pubsub_env.project, consumer.topic_id)
    app = make_app(handler)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
            for order_id in range(40):
                response = await client.post(f"/orders/{order_id}")
                assert response.status_code == 200
            assert (await client.get("/sync/7")).status_code == 200
        assert await fastapi_events.drain(30)
        await anyio.to_thread.run_sync(lambda: consumer.wait_for_count(81, 30))
    finally:
        await handler.shutdown()

    bodies = sorted((m.body[0], m.body[1].get("order_id", -1)) for m in consumer.received())
    assert bodies == sorted(
        [("order.placed", i) for i in range(40)] + [("order.paid", i) for i in range(40)] + [("sync.called", -1)]
    )
    assert {m.attributes["event_name"] for m in consumer.received()} == {
        "order.placed",
        "order.paid",
        "sync.called",
    }


@pytest.mark.servers
def test_lifespan_shutdown_flushes_to_pubsub(pubsub_env: PubSubEmulator, consumer_factory: Any) -> None:
    consumer = consumer_factory()
    handler = GoogleCloudSimplePubSubHandler(pubsub_env.project, consumer.topic_id)
    with TestClient(make_app(handler)) as client:
        for order_id in range(25):
            assert client.post(f"/orders/{order_id}").status_code == 200
    # Leaving the block ran the lifespan shutdown: the forwarder flushed and stopped its client.
    assert handler.stats.delivered == 50
    assert handler.transport._client is None  # type: ignore[attr-defined]
    consumer.wait_for_count(50, 30)


@pytest.mark.servers
def test_handler_survives_two_lifespans(pubsub_env: PubSubEmulator, consumer_factory: Any) -> None:
    """Test suites start an app more than once: the stopped client is rebuilt on the next startup."""
    consumer = consumer_factory()
    handler = GoogleCloudSimplePubSubHandler(pubsub_env.project, consumer.topic_id)
    app = make_app(handler)
    for round_ in range(2):
        with TestClient(app) as client:
            for order_id in range(10):
                assert client.post(f"/orders/{round_ * 10 + order_id}").status_code == 200
    consumer.wait_for_count(40, 30)
    assert sorted(m.body[1]["order_id"] for m in consumer.received() if m.body[0] == "order.placed") == list(range(20))
