"""Consumers and forwarders of the process, as the inspector sees them through the hooks (in-memory broker)."""

from __future__ import annotations

import pytest

from fastapi_events import drain
from fastapi_events.testing import InMemoryBroker

from ._app import make_app, make_handler
from .conftest import ClientFactory

pytestmark = pytest.mark.anyio


async def test_consumed_events_failures_and_dead_letters_show_up(client_for: ClientFactory) -> None:
    broker = InMemoryBroker()
    app = make_app()
    async with client_for(app) as client:
        await client.get("/_events/api/events")  # a page opens
        broker.publish("payments", "payment.captured", {"fail": False})
        broker.publish("payments", "payment.captured", {"fail": True})
        stats = await broker.consume("payments", make_handler(), max_attempts=2)
        events = (await client.get("/_events/api/events")).json()["events"]
        consumers = (await client.get("/_events/api/handlers")).json()["consumers"]
        recent = (await client.get("/_events/api/dead-letters")).json()["recent"]
    assert (stats.handled, stats.dead_lettered) == (1, 1)
    source = f"memory:{broker.source('payments').destination}"
    assert {(e["name"], e["source"]) for e in events} == {("payment.captured", source)}
    assert [e["outcome"] for e in events][:2] == ["ok", "failed"]
    # Both attempts at the failing message are shown (a row per delivery, or both runs on one row).
    failed_runs = [run for e in events for run in e["handlers"] if run["error"] is not None]
    assert len(failed_runs) == 2
    assert all("card declined" in run["error"] for run in failed_runs)
    (consumer,) = consumers
    assert (consumer["system"], consumer["messages"], consumer["failures"]) == ("memory", 2, 2)
    assert "card declined" in consumer["last_error"]
    (dead,) = recent
    assert dead["event"] == "payment.captured"
    assert "card declined" in dead["reason"]


@pytest.mark.parametrize("page", ["open before", "opened later"])
async def test_forwarder_counts_and_a_broker_refusal(client_for: ClientFactory, page: str) -> None:
    broker = InMemoryBroker()
    forwarder = broker.forwarder("audit")
    app = make_app(forwarder=forwarder)
    async with client_for(app) as client:
        if page == "open before":
            await client.get("/_events/api/handlers")
        # else the inspector's history keeps the forwarder's counters and the dead letter for a later page
        broker.fail_next("audit", permanent=True)
        await client.post("/events/order.noted", json=[1, 2])
        await drain(5)
        rows = (await client.get("/_events/api/handlers")).json()["forwarders"]
        recent = (await client.get("/_events/api/dead-letters")).json()["recent"]
    await forwarder.shutdown(5)
    # (Middlewares of other tests may still be alive in this process: only this forwarder counts here.)
    (row,) = [r for r in rows if r["handler"] == repr(forwarder)]
    assert row["system"] == "memory"
    assert row["spool_path"] is None
    assert (row["delivered"], row["dead_lettered"], row["queued"]) == (1, 1, 0)
    assert row["reachable"] is True
    assert row["messages"] == 2
    assert [d["event"] for d in recent] == ["order.noted"]
    assert len(broker.messages("audit")) == 1
