"""The broker-independent runner: ack only after success, retries, dead letters, order, shutdown."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fastapi import Depends

from fastapi_events.consumer import Consumer
from fastapi_events.delivery import RetryPolicy
from fastapi_events.handlers.local import LocalHandler

from ._fake import FakeSource

pytestmark = pytest.mark.anyio

FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def running(consumer: Consumer, body: Callable[[], Awaitable[None]]) -> None:
    task = asyncio.create_task(consumer.run())
    try:
        await body()
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)


async def test_sync_async_and_depends_handlers_run_then_message_is_acked() -> None:
    handler = LocalHandler()
    seen: list[tuple[str, Any]] = []

    def tenant() -> str:
        return "acme"

    @handler.register(event_name="order.*")
    async def on_order(event: tuple[str, Any], who: str = Depends(tenant)) -> None:
        seen.append(("async", event[1]["id"], who))

    @handler.register(event_name="order.created")
    def on_created_sync(event: tuple[str, Any]) -> None:
        assert threading.current_thread() is not threading.main_thread()  # sync code stays off the loop
        seen.append(("sync", event[1]["id"]))

    source = FakeSource()
    first = source.put_event("order.created", {"id": 1})
    second = source.put_event("order.paid", {"id": 2})
    consumer = Consumer(source, handler, retry=FAST_RETRY)

    async def body() -> None:
        await until(lambda: len(source.acked) == 2)

    await running(consumer, body)
    assert sorted(source.acked) == sorted([first, second])
    assert sorted(map(str, seen)) == sorted(map(str, [("async", 1, "acme"), ("sync", 1), ("async", 2, "acme")]))
    assert source.dead == []
    assert source.opened
    assert source.closed
    assert consumer.stats.handled == 2


async def test_failing_handler_is_retried_then_dead_lettered_while_others_flow() -> None:
    handler = LocalHandler()
    calls: dict[str, int] = {}

    @handler.register(event_name="*")
    async def flaky(event: tuple[str, Any]) -> None:
        calls[event[0]] = calls.get(event[0], 0) + 1
        if event[0] == "always.fails":
            raise RuntimeError("database is down")
        if event[0] == "fails.once" and calls[event[0]] == 1:
            raise RuntimeError("blip")

    source = FakeSource()
    bad = source.put_event("always.fails", {})
    once = source.put_event("fails.once", {})
    good = [source.put_event("fine", {"n": n}) for n in range(20)]
    consumer = Consumer(source, handler, retry=FAST_RETRY)

    async def body() -> None:
        await until(lambda: len(source.acked) == 21 and len(source.dead) == 1)

    await running(consumer, body)
    assert set(source.acked) == {once, *good}
    [(mid, reason, name, attempts)] = source.dead
    assert (mid, name, attempts) == (bad, "always.fails", 3)
    assert "handler failed after 3 attempt(s)" in reason
    assert "database is down" in reason
    assert calls["always.fails"] == 3
    assert calls["fails.once"] == 2
    assert consumer.stats.reasons == {"handler_failed": 1}


async def test_malformed_and_unknown_messages_are_dead_lettered_never_crash() -> None:
    handler = LocalHandler()
    handler.register(lambda event: None, event_name="known")
    source = FakeSource()
    ids = [
        source.put(b"\xff\xfe not utf-8"),
        source.put(b"{not json"),
        source.put(b'{"an": "object"}'),
        source.put(b""),
        source.put_event("nobody.listens", {}),
    ]
    ok = source.put_event("known", {})
    consumer = Consumer(source, handler, retry=FAST_RETRY)

    async def body() -> None:
        await until(lambda: len(source.dead) == 5 and source.acked == [ok])

    await running(consumer, body)
    reasons = {mid: reason for mid, reason, _, _ in source.dead}
    assert set(reasons) == set(ids)
    assert "not valid UTF-8" in reasons[ids[0]]
    assert "not JSON" in reasons[ids[1]]
    assert "JSON array" in reasons[ids[2]]
    assert "empty" in reasons[ids[3]]
    assert "no handler registered for 'nobody.listens'" in reasons[ids[4]]
    assert consumer.stats.reasons == {"malformed": 4, "unknown": 1}


async def test_ignore_unknown_acknowledges_events_without_handlers() -> None:
    source = FakeSource()
    mid = source.put_event("nobody.listens", {})
    consumer = Consumer(source, LocalHandler(), ignore_unknown=True)

    async def body() -> None:
        await until(lambda: source.acked == [mid])

    await running(consumer, body)
    assert source.dead == []


async def test_a_lane_is_handled_in_order_while_lanes_run_concurrently() -> None:
    handler = LocalHandler()
    order: dict[str, list[int]] = {"a": [], "b": []}
    active = 0
    peak = 0

    @handler.register(event_name="*")
    async def record(event: tuple[str, Any]) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        # Later messages of a lane finish faster: only sequential handling keeps them in order.
        await asyncio.sleep(0.02 / (1 + event[1]["n"]))
        order[event[1]["lane"]].append(event[1]["n"])
        active -= 1

    source = FakeSource()
    for n in range(10):
        for lane in ("a", "b"):
            source.put_event("e", {"lane": lane, "n": n}, lane=lane)
    consumer = Consumer(source, handler, concurrency=8)

    async def body() -> None:
        await until(lambda: len(source.acked) == 20)

    await running(consumer, body)
    assert order == {"a": list(range(10)), "b": list(range(10))}
    assert peak == 2  # one per lane


async def test_concurrency_is_bounded() -> None:
    handler = LocalHandler()
    active = 0
    peak = 0

    @handler.register(event_name="*")
    async def slow(event: tuple[str, Any]) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1

    source = FakeSource()
    for n in range(60):
        source.put_event("e", {"n": n})
    consumer = Consumer(source, handler, concurrency=4)

    async def body() -> None:
        await until(lambda: len(source.acked) == 60)

    await running(consumer, body)
    assert peak == 4


async def test_stop_lets_running_handlers_finish_and_releases_waiting_retries() -> None:
    handler = LocalHandler()
    started = asyncio.Event()
    finish = asyncio.Event()

    @handler.register(event_name="slow")
    async def slow(event: tuple[str, Any]) -> None:
        started.set()
        await finish.wait()

    @handler.register(event_name="broken")
    async def broken(event: tuple[str, Any]) -> None:
        raise RuntimeError("nope")

    source = FakeSource()
    slow_id = source.put_event("slow", {})
    broken_id = source.put_event("broken", {})
    consumer = Consumer(source, handler, retry=RetryPolicy(max_attempts=5, initial_delay=60, max_delay=60))
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(started.wait(), 5)
    await until(lambda: consumer.stats.retried == 1)
    consumer.stop()
    await asyncio.sleep(0.1)
    assert not task.done()  # still waiting for the running handler
    finish.set()
    stats = await asyncio.wait_for(task, 5)
    assert source.acked == [slow_id]
    assert source.released == [broken_id]  # not acked: the broker delivers it again
    assert source.dead == []
    assert source.closed
    assert stats.released == 1


async def test_shutdown_timeout_cancels_handlers_that_do_not_finish() -> None:
    handler = LocalHandler()
    started = asyncio.Event()

    @handler.register(event_name="*")
    async def forever(event: tuple[str, Any]) -> None:
        started.set()
        await asyncio.sleep(3600)

    source = FakeSource()
    source.put_event("e", {})
    consumer = Consumer(source, handler, shutdown_timeout=0.2)
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(started.wait(), 5)
    consumer.stop()
    await asyncio.wait_for(task, 5)
    assert source.acked == []
    assert source.closed


async def test_redelivering_source_gets_messages_back_and_counts_attempts_from_the_broker() -> None:
    handler = LocalHandler()
    attempts: list[int] = []

    @handler.register(event_name="*")
    async def fails(event: tuple[str, Any]) -> None:
        attempts.append(1)
        raise ValueError("bad data")

    source = FakeSource(redelivers=True)
    mid = source.put_event("e", {})
    consumer = Consumer(source, handler, retry=FAST_RETRY)

    async def body() -> None:
        await until(lambda: len(source.dead) == 1)

    await running(consumer, body)
    assert [m for m, _ in source.handed_back] == [mid, mid]
    assert all(0 <= delay <= 0.02 for _, delay in source.handed_back)
    assert source.dead[0][0] == mid
    assert source.dead[0][3] == 3
    assert len(attempts) == 3


async def test_dead_lettering_is_retried_until_it_succeeds() -> None:
    source = FakeSource(fail_dead_letter=2)
    source.put(b"garbage")
    consumer = Consumer(source, LocalHandler(), retry=FAST_RETRY)

    async def body() -> None:
        await until(lambda: len(source.dead) == 1)

    await running(consumer, body)
    assert source.acked == []


async def test_receive_errors_are_survived() -> None:
    source = FakeSource()
    real_receive = source.receive
    failures = 2

    async def flaky_receive(max_messages: int) -> Any:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionError("broker down")
        return await real_receive(max_messages)

    source.receive = flaky_receive  # type: ignore[method-assign]
    handler = LocalHandler()
    handler.register(lambda event: None, event_name="*")
    mid = source.put_event("e", {})
    consumer = Consumer(source, handler, retry=FAST_RETRY)

    async def body() -> None:
        await until(lambda: source.acked == [mid])

    await running(consumer, body)


async def test_failed_ack_is_logged_and_does_not_stop_the_consumer(caplog: pytest.LogCaptureFixture) -> None:
    source = FakeSource()
    real_ack = source.ack
    failures = 1

    async def flaky_ack(delivery: Any) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionError("connection reset")
        await real_ack(delivery)

    source.ack = flaky_ack  # type: ignore[method-assign]
    handler = LocalHandler()
    handler.register(lambda event: None, event_name="*")
    first = source.put_event("e", {})
    second = source.put_event("e", {})
    consumer = Consumer(source, handler)

    async def body() -> None:
        await until(lambda: len(source.acked) == 1)

    await running(consumer, body)
    assert source.acked in ([first], [second])
    assert "will be delivered again" in caplog.text


async def test_source_that_cannot_open_yet_is_retried_and_stop_still_works() -> None:
    source = FakeSource()
    real_open = source.open
    failures = 2

    async def flaky_open() -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionError("broker starting")
        await real_open()

    source.open = flaky_open  # type: ignore[method-assign]
    handler = LocalHandler()
    handler.register(lambda event: None, event_name="*")
    mid = source.put_event("e", {})
    consumer = Consumer(source, handler, retry=FAST_RETRY)

    async def body() -> None:
        await until(lambda: source.acked == [mid])

    await running(consumer, body)

    never = FakeSource()

    async def always_down() -> None:
        raise ConnectionError("down")

    never.open = always_down  # type: ignore[method-assign]
    stopped = Consumer(never, handler)
    task = asyncio.create_task(stopped.run())
    await asyncio.sleep(0.2)
    stopped.stop()
    await asyncio.wait_for(task, 5)
    assert never.closed
