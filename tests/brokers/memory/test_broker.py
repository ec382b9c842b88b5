"""``InMemoryBroker``: the real forwarder and consumer pipeline over topics held in the test process."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from fastapi_events.consumer import consume
from fastapi_events.delivery import RetryPolicy
from fastapi_events.dispatcher import dispatch
from fastapi_events.errors import ConfigurationError
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.testing import InMemoryBroker

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02)


def order_app(broker: InMemoryBroker, **options: Any) -> Starlette:
    async def create(request: Request) -> JSONResponse:
        n = int(request.path_params["n"])
        dispatch("order.created", {"n": n})
        return JSONResponse({"n": n})

    app = Starlette(routes=[Route("/orders/{n}", create, methods=["POST"])])
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[broker.forwarder("orders", **options)])
    return app


def recording_handler(seen: list[Any], pattern: str = "*") -> LocalHandler:
    handler = LocalHandler()

    @handler.register(event_name=pattern)
    async def record(event: tuple[str, Any]) -> None:
        seen.append(event)

    return handler


async def test_events_of_requests_are_consumed_through_the_real_pipeline() -> None:
    broker = InMemoryBroker()
    with TestClient(order_app(broker)) as client:
        for n in range(5):
            assert client.post(f"/orders/{n}").status_code == 200
    seen: list[Any] = []
    report = await broker.consume("orders", recording_handler(seen))
    assert seen == [("order.created", {"n": n}) for n in range(5)]
    assert (report.received, report.handled, report.dead_lettered) == (5, 5, 0)
    assert broker.messages("orders") == []
    assert len(broker.snapshot("orders").acknowledged) == 5


async def test_consume_waits_for_events_the_forwarder_still_holds() -> None:
    broker = InMemoryBroker()
    forwarder = broker.forwarder("orders", retry=FAST)
    broker.fail_next("orders", 2)  # the first two sends are refused: they are in the forwarder, not the topic
    await forwarder.handle_many([("a", 1), ("b", 2), ("c", 3)])
    seen: list[Any] = []
    report = await broker.consume("orders", recording_handler(seen))
    assert sorted(seen) == [("a", 1), ("b", 2), ("c", 3)]
    assert report.handled == 3
    assert forwarder.stats.retried == 2
    await forwarder.shutdown()


async def test_refused_for_good_is_a_dead_letter_of_the_forwarder() -> None:
    broker = InMemoryBroker()
    forwarder = broker.forwarder("orders")
    broker.fail_next("orders", permanent=True)
    await forwarder.handle_many([("doomed", {"id": 1}), ("fine", {"id": 2})])
    await forwarder.flush(5)
    [(name, payload, reason)] = broker.dead_letters("orders")
    assert (name, payload) == ("doomed", {"id": 1})
    assert "refused by InMemoryBroker.fail_next()" in reason
    assert broker.snapshot("orders").dead_letters[0].stage == "forward"
    assert broker.messages("orders") == [("fine", {"id": 2})]
    await forwarder.shutdown()


async def test_an_outage_keeps_events_and_spends_no_retry_budget() -> None:
    broker = InMemoryBroker()
    forwarder = broker.forwarder("orders", retry=RetryPolicy(max_attempts=1), reconnect_max_delay=0.05)
    with broker.unreachable("orders"):
        await forwarder.handle_many([("kept", n) for n in range(10)])
        await asyncio.sleep(0.3)  # several failed sends
        assert forwarder.stats.delivered == 0
    await forwarder.flush(5)
    assert forwarder.stats.delivered == 10
    assert broker.dead_letters("orders") == []
    assert broker.messages("orders") == [("kept", n) for n in range(10)]
    await forwarder.shutdown()


async def test_consume_reports_retries_and_lists_dead_letters_with_the_reason() -> None:
    broker = InMemoryBroker()
    attempts: list[Any] = []
    handler = recording_handler(attempts)

    @handler.register(event_name="always.fails")
    async def fails(event: tuple[str, Any]) -> None:
        raise RuntimeError("database is down")

    broker.publish("orders", "always.fails", {"id": 7})
    for n in range(10):
        broker.publish("orders", "fine", {"n": n})
    report = await broker.consume("orders", handler, max_attempts=3)
    assert attempts.count(("always.fails", {"id": 7})) == 3
    [(name, payload, reason)] = broker.dead_letters("orders")
    assert (name, payload) == ("always.fails", {"id": 7})
    assert "handler failed after 3 attempt(s)" in reason
    assert "database is down" in reason
    assert (report.handled, report.retried, report.dead_lettered) == (10, 2, 1)
    assert broker.messages("orders") == []


async def test_redelivering_topic_hands_failed_messages_back_with_the_attempt_counted() -> None:
    broker = InMemoryBroker()
    attempts: list[int] = []
    handler = LocalHandler()

    @handler.register(event_name="*")
    async def fails(event: tuple[str, Any]) -> None:
        attempts.append(1)
        raise ValueError("bad data")

    mid = broker.publish("orders", "e")
    await broker.consume("orders", handler, retry=FAST, redelivers=True)
    snapshot = broker.snapshot("orders")
    assert [m for m, _ in snapshot.handed_back] == [mid, mid]
    [record] = snapshot.dead_letters
    assert (record.message_id, record.attempts, record.stage) == (mid, 3, "consume")
    assert record.attributes["dead_letter_attempts"] == "3"
    assert len(attempts) == 3


async def test_malformed_message_is_dead_lettered_naming_it_while_others_flow() -> None:
    broker = InMemoryBroker()
    bad = broker.publish_raw("orders", b"{not json", {"event_name": "order.created"})
    broker.publish("orders", "order.created", {"n": 1})
    seen: list[Any] = []
    report = await broker.consume("orders", recording_handler(seen))
    assert seen == [("order.created", {"n": 1})]
    [record] = broker.snapshot("orders").dead_letters
    assert record.message_id == bad
    assert record.payload == b"{not json"
    assert "malformed message" in record.reason
    assert "not JSON" in record.reason
    assert report.reasons == {"malformed": 1}


async def test_messages_of_one_key_are_handled_in_order() -> None:
    broker = InMemoryBroker()
    order: dict[str, list[int]] = {"a": [], "b": []}
    handler = LocalHandler()

    @handler.register(event_name="*")
    async def record(event: tuple[str, Any]) -> None:
        await asyncio.sleep(0.01 / (1 + event[1]["n"]))  # later ones finish faster: only order keeps order
        order[event[1]["key"]].append(event[1]["n"])

    forwarder = broker.forwarder("orders", key=lambda event: event[1]["key"])
    await forwarder.handle_many([("e", {"key": k, "n": n}) for n in range(10) for k in ("a", "b")])
    await broker.consume("orders", handler, concurrency=8)
    assert order == {"a": list(range(10)), "b": list(range(10))}
    await forwarder.shutdown()


async def test_handler_timeout_cancels_a_hanging_handler_and_dead_letters_it() -> None:
    broker = InMemoryBroker()
    cancelled = 0
    handler = LocalHandler()

    @handler.register(event_name="hangs")
    async def hangs(event: tuple[str, Any]) -> None:
        nonlocal cancelled
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled += 1
            raise

    handler.register(lambda event: None, event_name="quick")
    broker.publish("orders", "hangs")
    broker.publish("orders", "quick")
    began = time.monotonic()
    report = await broker.consume("orders", handler, max_attempts=2, handler_timeout=0.2, concurrency=1)
    assert time.monotonic() - began < 10
    assert cancelled == 2
    [(name, _, reason)] = broker.dead_letters("orders")
    assert name == "hangs"
    assert "timed out after 0.2s" in reason
    assert (report.timed_out, report.handled, report.reasons) == (2, 1, {"handler_timeout": 1})


async def test_failures_of_consumer_calls_can_be_injected() -> None:
    broker = InMemoryBroker()
    broker.publish("orders", "e", 1)
    broker.publish_raw("orders", b"garbage")
    broker.fail_next("orders", 2, operation="receive")
    broker.fail_next("orders", 1, operation="ack")
    broker.fail_next("orders", 2, operation="dead_letter")
    seen: list[Any] = []
    report = await broker.consume("orders", recording_handler(seen), retry=FAST)
    assert seen == [("e", 1), ("e", 1)]  # the failed acknowledgement: delivered again
    assert report.handled == 1
    assert len(broker.dead_letters("orders")) == 1


async def test_consume_gives_up_after_its_timeout_naming_what_is_left() -> None:
    broker = InMemoryBroker()
    forwarder = broker.forwarder("orders")
    with broker.unreachable("orders"):
        await forwarder.handle_many([("stuck", 1)])
        with pytest.raises(TimeoutError, match=r"1 event\(s\) in forwarders"):
            await broker.consume("orders", LocalHandler(), timeout=0.3)
    await forwarder.shutdown()


async def test_memory_urls_reach_a_named_broker_through_the_generic_consumer() -> None:
    broker = InMemoryBroker("urls")
    broker.publish("orders", "e", 1)
    seen: list[Any] = []
    handled = asyncio.Event()
    handler = recording_handler(seen)
    handler.register(lambda event: handled.set(), event_name="e")
    task = asyncio.create_task(consume(broker.url("orders"), handler))
    await asyncio.wait_for(handled.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [("e", 1)]
    with pytest.raises(ConfigurationError, match="no InMemoryBroker named 'nope'"):
        await consume("memory://nope/orders", LocalHandler())
    successor = InMemoryBroker("urls")  # e.g. the next test's: the name now means the new broker
    assert InMemoryBroker.named("urls") is successor


def test_bad_failure_injections_are_refused() -> None:
    broker = InMemoryBroker()
    with pytest.raises(ConfigurationError, match="operation must be one of"):
        broker.fail_next("orders", operation="publish")
    with pytest.raises(ConfigurationError, match="permanent=True applies"):
        broker.fail_next("orders", operation="ack", permanent=True)
    with pytest.raises(ConfigurationError, match="count must be"):
        broker.fail_next("orders", 0)


async def test_consume_can_stop_after_a_number_of_messages() -> None:
    broker = InMemoryBroker()
    ids = [broker.publish("orders", "e", n) for n in range(5)]
    assert broker.snapshot("orders").waiting == ids
    seen: list[Any] = []
    report = await broker.consume("orders", recording_handler(seen), max_messages=2, concurrency=1)
    assert seen == [("e", 0), ("e", 1)]
    assert report.handled == 2
    assert broker.snapshot("orders").waiting == ids[2:]
    await broker.consume("orders", recording_handler(seen))
    assert seen == [("e", n) for n in range(5)]


async def test_events_of_a_request_served_without_lifespan_are_on_the_topic_when_it_returns() -> None:
    broker = InMemoryBroker()
    client = TestClient(order_app(broker))  # no `with`: each request on an event loop of its own
    assert client.post("/orders/1").status_code == 200
    assert broker.messages("orders") == [("order.created", {"n": 1})]
    seen: list[Any] = []
    await broker.consume("orders", recording_handler(seen))
    assert seen == [("order.created", {"n": 1})]
