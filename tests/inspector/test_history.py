"""What an inspector opened late shows of the time no page was open: handler latencies and consumer counters."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from fastapi_events import _hooks, drain
from fastapi_events.brokers.redis import RedisStreamForwardHandler
from fastapi_events.consumer import Consumer, source_from_url
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.testing import InMemoryBroker
from fastapi_events.typing import Event

from .._servers import until
from ._app import make_app, make_handler
from .conftest import ClientFactory

pytestmark = pytest.mark.anyio

PAUSE = 0.02  # seconds each timed handler takes
EVENTS = 10


def timed_handler() -> LocalHandler:
    handler = LocalHandler()

    @handler.register(event_name="parcel.*")
    async def weigh(event: Event) -> None:  # one event, one function: the middleware's shortest path
        await asyncio.sleep(PAUSE)

    @handler.register(event_name="label.*")
    def print_label(event: Event) -> None:  # sync: runs in a worker thread
        time.sleep(PAUSE)

    @handler.register(event_name="label.*")
    async def notify(event: Event) -> None:  # a second function for the same event
        await asyncio.sleep(PAUSE)

    return handler


def by_function(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["function"].rsplit(".", 1)[1]: h for h in view["local"]}


async def test_a_page_opened_after_events_shows_handler_latency_since_start(client_for: ClientFactory) -> None:
    app = make_app(local=timed_handler())
    async with client_for(app) as client:
        for i in range(10):
            await client.post("/events/parcel.weighed", json=[{"parcel": i}])
        await client.post("/events/label.printed", json=[{"label": 1}, {"label": 2}])
        await drain(5)
        assert not _hooks.on_handle  # no page open: no per-call hook, the handler times itself
        local = by_function((await client.get("/_events/api/handlers")).json())
    low = PAUSE * 1000 * 15 / 16  # a percentile is the middle of its bucket: at most 1/16 below the run time
    for name, handled in (("weigh", 10), ("print_label", 2), ("notify", 2)):
        row = local[name]
        assert row["handled"] == handled, row
        assert row["p50_ms"] is not None, row
        assert low <= row["p50_ms"] <= row["p99_ms"], row


async def test_latency_goes_on_while_a_page_is_open_and_after_it_went_away(client_for: ClientFactory) -> None:
    local = timed_handler()
    app = make_app(local=local, idle_after=0.2)
    async with client_for(app) as client:
        await client.post("/events/parcel.weighed", json=[{"parcel": 0}])
        await drain(5)
        before = by_function((await client.get("/_events/api/handlers")).json())["weigh"]  # a page opens
        assert _hooks.on_handle
        await client.post("/events/parcel.weighed", json=[{"parcel": 1}, {"parcel": 2}])
        await drain(5)
        await asyncio.sleep(0.3)  # the page goes away
        await client.post("/events/parcel.weighed", json=[{"parcel": 3}])
        await drain(5)
        assert not _hooks.on_handle
        after = by_function((await client.get("/_events/api/handlers")).json())["weigh"]
    (weigh,) = [r for r in local.registrations if r.name.endswith("weigh")]
    assert weigh.latency.total == 4  # each run timed once, page open or not
    assert before["handled"] == 1
    assert after["handled"] == 4
    assert after["p50_ms"] >= PAUSE * 1000 * 15 / 16


async def test_a_page_opened_after_a_consumer_ran_shows_its_counters(client_for: ClientFactory) -> None:
    broker = InMemoryBroker()
    app = make_app()
    consumed = make_handler()
    async with client_for(app) as client:
        for fail in (False, True, False):
            broker.publish("payments", "payment.captured", {"fail": fail})
        stats = await broker.consume("payments", consumed, max_attempts=2)
        assert not _hooks.on_handle  # no page open
        view = (await client.get("/_events/api/handlers")).json()
        recent = (await client.get("/_events/api/dead-letters")).json()["recent"]
    assert (stats.handled, stats.dead_lettered) == (2, 1)
    consumers = [c for c in view["consumers"] if c["destination"] == broker.source("payments").destination]
    (consumer,) = consumers
    # Three messages; the failing one's two attempts both count as failures.
    assert (consumer["system"], consumer["messages"], consumer["failures"]) == ("memory", 3, 2)
    assert consumer["reachable"] is True
    assert "card declined" in consumer["last_error"]
    assert [d["event"] for d in recent] == ["payment.captured"]
    assert "card declined" in recent[0]["reason"]
    (charge,) = [r for r in consumed.registrations if r.name.endswith("charge")]
    assert charge.latency.total == 4  # the consumer's handler runs are timed too


async def test_with_history_off_no_handler_is_timed(client_for: ClientFactory) -> None:
    local = timed_handler()
    app = make_app(local=local, history=0)
    async with client_for(app) as client:
        assert not _hooks.time_handlers
        await client.post("/events/parcel.weighed", json=[{"parcel": 0}])
        await drain(5)
        assert all(r.latency.total == 0 for r in local.registrations)
        assert by_function((await client.get("/_events/api/handlers")).json())["weigh"]["p50_ms"] is None


@pytest.mark.servers
async def test_a_redis_consumer_and_forwarder_seen_only_through_the_history(
    client_for: ClientFactory, redis_server: Any
) -> None:
    """A forwarder sends to Redis Streams and a consumer in the same process reads them back, no page open."""
    stream = f"history-{uuid.uuid4().hex[:8]}"
    forwarder = RedisStreamForwardHandler(stream, redis_server.url)
    app = make_app(forwarder=forwarder)
    consumed = make_handler()
    base = redis_server.url.rsplit("/", 1)[0]
    consumer = Consumer(source_from_url(f"{base}/0/{stream}?group=history"), consumed, shutdown_timeout=2)
    async with client_for(app) as client:
        await client.post("/events/payment.captured", json=[{"fail": False, "n": n} for n in range(EVENTS)])
        await drain(10)
        run = asyncio.get_running_loop().create_task(consumer.run())
        try:
            await until(lambda: consumer.stats.handled == EVENTS, message=f"{EVENTS} events consumed")
            # The source reports its lag after a read, at most once a second: wait for one after the last.
            await until(lambda: app.state.inspector.recorder.lag.get(("redis", stream, "0")) == 0, message="lag 0")
        finally:
            consumer.stop()
            await run
        assert not _hooks.on_handle  # no page was open
        view = (await client.get("/_events/api/handlers")).json()
    await forwarder.shutdown(5)
    (sent,) = [f for f in view["forwarders"] if f["destination"] == stream]
    assert (sent["messages"], sent["failures"], sent["reachable"]) == (EVENTS, 0, True)
    (received,) = [c for c in view["consumers"] if c["destination"] == stream]
    assert (received["system"], received["messages"], received["failures"]) == ("redis", EVENTS, 0)
    assert received["lag"] == {"0": 0}
    (charge,) = [h for h in by_function(view).values() if h["function"].endswith("charge")]
    assert charge["handled"] == EVENTS  # the app's own handler, through the middleware
    assert charge["p50_ms"] is not None
    (consumer_charge,) = [r for r in consumed.registrations if r.name.endswith("charge")]
    assert consumer_charge.latency.total == EVENTS  # the consumer's handler, timed as well
