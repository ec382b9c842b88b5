# test_billing.py
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.testing import InMemoryBroker

billing = LocalHandler()  # what `python -m fastapi_events consume URL --handlers ...` runs in production
invoiced: list[int] = []


@billing.register(event_name="order.placed")
async def invoice(event):
    _, order = event
    if order["total"] < 0:
        raise ValueError("negative total")
    invoiced.append(order["id"])


def make_app(broker: InMemoryBroker) -> FastAPI:
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[broker.forwarder("orders")])

    @app.post("/orders/{order_id}")
    async def place_order(order_id: int, total: int):
        dispatch("order.placed", {"id": order_id, "total": total})
        return {"id": order_id}

    return app


@pytest.mark.anyio
async def test_orders_are_invoiced_and_bad_ones_dead_lettered():
    broker = InMemoryBroker()
    with TestClient(make_app(broker)) as client:
        client.post("/orders/1?total=30")
        client.post("/orders/2?total=-5")

    report = await broker.consume("orders", billing, max_attempts=3)

    assert invoiced == [1]
    assert (report.handled, report.retried, report.dead_lettered) == (1, 2, 1)
    [(name, order, reason)] = broker.dead_letters("orders")
    assert (name, order["id"]) == ("order.placed", 2)
    assert "negative total" in reason
