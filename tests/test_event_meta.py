"""The id of a plain ``dispatch()``: one per event, the same for every handler of the app, and not kept once
they all had it."""

from __future__ import annotations

from fastapi import Depends
from fastapi.testclient import TestClient

from fastapi_events import EventMeta, event_meta
from fastapi_events._event_meta import _local_ids
from fastapi_events.brokers.memory import InMemoryBroker
from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.typing import Event
from tests.apps import app_with


def test_every_handler_sees_the_id_the_forwarder_sends_and_none_is_kept_afterwards() -> None:
    broker = InMemoryBroker()
    forwarder = broker.forwarder("orders")
    local = LocalHandler()
    seen: list[tuple[int, str]] = []

    @local.register(event_name="order.*")
    async def on_order(event: Event, meta: EventMeta = Depends(event_meta)) -> None:
        seen.append((event[1]["n"], meta.id))

    app = app_with(local, forwarder)

    @app.post("/orders/{count}")
    async def place(count: int) -> dict[str, int]:
        for n in range(count):
            dispatch("order.placed", {"n": n})
        return {"placed": count}

    before = len(_local_ids)
    with TestClient(app) as client:
        for count in (3, 5, 40):
            assert client.post(f"/orders/{count}").status_code == 200
        # A busy app's recent events must not pile up here: kept, they outlive the young GC generation and every
        # full collection walks them (most of a forwarder's CPU under load, before this was let go).
        assert len(_local_ids) == before
    assert len(seen) == 48
    assert len({event_id for _, event_id in seen}) == 48
    sent = broker.snapshot("orders").waiting
    assert sorted(sent) == sorted(event_id for _, event_id in seen)


def test_two_functions_of_one_local_handler_see_the_same_id() -> None:
    local = LocalHandler()
    seen: dict[str, list[str]] = {"first": [], "second": []}

    @local.register(event_name="order.*")
    async def first(event: Event, meta: EventMeta = Depends(event_meta)) -> None:
        seen["first"].append(meta.id)

    @local.register(event_name="order.*")
    def second(event: Event, meta: EventMeta = Depends(event_meta)) -> None:  # in a worker thread
        seen["second"].append(meta.id)

    app = app_with(local)

    @app.post("/orders")
    async def place() -> dict[str, int]:
        for n in range(5):
            dispatch("order.placed", {"n": n})
        return {"placed": 5}

    with TestClient(app) as client:
        assert client.post("/orders").status_code == 200
    assert len(set(seen["first"])) == 5
    assert sorted(seen["first"]) == sorted(seen["second"])
