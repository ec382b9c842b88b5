"""A full in-memory queue pushes back on the requests that dispatch events; it never discards one while the broker
is healthy. Only during an outage, with no room and no spool, are events given up - each one reported."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from fastapi_events.brokers.memory import InMemoryBroker
from fastapi_events.delivery import OutboundMessage
from tests._servers import until
from tests.delivery._app import make_app
from tests.delivery._load import EVENTS_PER_REQUEST, LIMIT_CONCURRENCY, Sampler, drive
from tests.stream.apps import ThreadServer

MAX_QUEUE = 50
LOAD_SECONDS = 4.0


def _numbers(broker: InMemoryBroker, topic: str) -> list[int]:
    return [payload for _, payload in broker.messages(topic)]


@pytest.mark.anyio
async def test_handle_many_waits_for_room_instead_of_dropping() -> None:
    broker = InMemoryBroker()
    broker.slow_down("orders", 0.2)
    handler = broker.forwarder("orders", max_queue_size=5)
    try:
        await handler.handle_many([("first", i) for i in range(5)])
        second = asyncio.ensure_future(handler.handle_many([("second", i) for i in range(7)]))
        await until(lambda: handler.stats.waiting > 0, 10, "the second call to wait for room")
        assert not second.done()
        assert handler.stats.queued <= 5
        await asyncio.wait_for(second, 30)  # returns once its events were stored (and handed over)
        await handler.flush(30)
        assert [name for name, _ in broker.messages("orders")] == ["first"] * 5 + ["second"] * 7
        stats = handler.stats
        assert (stats.delivered, stats.dropped, stats.waiting) == (12, 0, 0)
    finally:
        await handler.shutdown(5)


@pytest.mark.anyio
async def test_a_broker_slower_than_the_requests_slows_them_down_and_every_event_arrives() -> None:
    broker = InMemoryBroker()
    broker.slow_down("orders", 0.05)  # at most MAX_QUEUE events per 50 ms: far below what the clients send
    handler = broker.forwarder("orders", max_queue_size=MAX_QUEUE)
    with ThreadServer(make_app(handler), limit_concurrency=LIMIT_CONCURRENCY) as server, Sampler(handler) as peaks:
        sent = await drive(server.url, LOAD_SECONDS, at_least=10 * MAX_QUEUE + 1)
        await until(lambda: handler.stats.queued == 0, 60, "the forwarder to deliver everything")
    assert len(sent) > 10 * MAX_QUEUE
    assert sorted(_numbers(broker, "orders")) == sorted(sent)
    stats = handler.stats
    assert (stats.delivered, stats.dropped, stats.dead_lettered) == (len(sent), 0, 0)
    assert peaks.waiting > 0, "the load never filled the queue: nothing was tested"
    # Memory: the queue never grows past its bound; beyond it, each ASGI call in progress holds its own events.
    assert peaks.queued <= MAX_QUEUE
    assert peaks.held <= MAX_QUEUE + LIMIT_CONCURRENCY * EVENTS_PER_REQUEST


@pytest.mark.anyio
async def test_during_an_outage_without_spool_the_events_given_up_are_exactly_the_missing_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = InMemoryBroker()
    reported: list[OutboundMessage] = []
    handler = broker.forwarder(
        "orders", max_queue_size=MAX_QUEUE, reconnect_max_delay=0.2, on_dead_letter=lambda m, _r: reported.append(m)
    )

    async def outage_in_the_middle() -> None:
        await asyncio.sleep(LOAD_SECONDS / 4)
        with broker.unreachable("orders"):
            await asyncio.sleep(LOAD_SECONDS / 2)

    server = ThreadServer(make_app(handler), limit_concurrency=LIMIT_CONCURRENCY)
    with server, caplog.at_level(logging.ERROR, logger="fastapi_events"):
        sent, _ = await asyncio.gather(drive(server.url, LOAD_SECONDS), outage_in_the_middle())
        await until(lambda: handler.stats.queued == 0, 60, "the forwarder to deliver what it kept")
    arrived = _numbers(broker, "orders")
    missing = set(sent) - set(arrived)
    assert len(arrived) == len(set(arrived))
    assert missing, "the outage dropped nothing: the queue never filled"
    stats = handler.stats
    assert stats.dropped == len(missing)
    assert {json.loads(m.body)[1] for m in reported} == missing
    dropped_logs = [r for r in caplog.records if "DROPPED" in r.getMessage()]
    assert len(dropped_logs) == len(missing)
    assert all(getattr(r, "event_name", None) == "load.tick" for r in dropped_logs)
