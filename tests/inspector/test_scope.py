"""Two apps in one process, each with its own middleware and inspector: each inspector describes its own app."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from fastapi_events import dispatch, drain
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.inspector import Inspector
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.testing import InMemoryBroker
from fastapi_events.typing import Event

from .conftest import ClientFactory

pytestmark = pytest.mark.anyio


def shipping_handler() -> LocalHandler:
    handler = LocalHandler()

    @handler.register(event_name="shipment.*")
    def print_label(event: Event) -> None:
        pass

    return handler


def billing_handler() -> LocalHandler:
    handler = LocalHandler()

    @handler.register(event_name="invoice.*")
    def send_invoice(event: Event) -> None:
        pass

    return handler


def build(title: str, local: LocalHandler, forwarder: Any, name: str) -> FastAPI:
    app = FastAPI(title=title)
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[local, forwarder])
    app.state.inspector = Inspector()
    app.mount("/_events", app.state.inspector.app)

    @app.post("/emit")
    async def emit() -> dict[str, str]:
        dispatch(name, payload={"from": title})
        return {"dispatched": name}

    return app


async def test_each_inspector_shows_only_the_app_it_is_mounted_in(client_for: ClientFactory) -> None:
    broker = InMemoryBroker()
    shipping = build("shipping", shipping_handler(), broker.forwarder("parcels"), "shipment.sent")
    billing = build("billing", billing_handler(), broker.forwarder("invoices"), "invoice.sent")
    async with client_for(shipping) as ship, client_for(billing) as bill:
        for client in (ship, bill):
            await client.post("/emit")
        await drain(5)
        views = {name: (await c.get("/_events/api/handlers")).json() for name, c in (("ship", ship), ("bill", bill))}
        catalogs = {name: (await c.get("/_events/api/catalog")).json() for name, c in (("ship", ship), ("bill", bill))}
        documents = {
            name: (await c.get("/_events/asyncapi.json")).json() for name, c in (("ship", ship), ("bill", bill))
        }
        tails = {name: (await c.get("/_events/api/events")).json() for name, c in (("ship", ship), ("bill", bill))}

    def functions(view: dict[str, Any]) -> set[str]:
        return {h["function"].rsplit(".", 1)[1] for h in view["local"]}

    assert functions(views["ship"]) == {"print_label"}
    assert functions(views["bill"]) == {"send_invoice"}
    assert [f["destination"] for f in views["ship"]["forwarders"]] == ["parcels"]
    assert [f["destination"] for f in views["bill"]["forwarders"]] == ["invoices"]
    assert views["ship"]["local"][0]["handled"] == 1

    def names(catalog: dict[str, Any]) -> set[str]:
        return {entry["name"] for entry in catalog["events"]}

    assert "shipment.sent" in names(catalogs["ship"])
    assert "invoice.sent" not in names(catalogs["ship"])
    assert "invoice.sent" in names(catalogs["bill"])
    assert "shipment.sent" not in names(catalogs["bill"])

    def addresses(document: dict[str, Any]) -> set[str]:
        return {channel["address"] for channel in document["channels"].values()}

    assert {"shipment.*", "parcels"} <= addresses(documents["ship"])
    assert not {"invoice.*", "invoices", "invoice.sent"} & addresses(documents["ship"])
    assert {"invoice.*", "invoices"} <= addresses(documents["bill"])
    assert not {"shipment.*", "parcels", "shipment.sent"} & addresses(documents["bill"])

    assert [e["name"] for e in tails["ship"]["events"]] == ["shipment.sent"]
    assert [e["name"] for e in tails["bill"]["events"]] == ["invoice.sent"]
