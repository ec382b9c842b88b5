"""The broker-independent runner: ack only after success, retries, dead letters, order, shutdown, timeouts.

Driven through the in-memory broker's source, whose topic records what the runner did with each message.
"""

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
from fastapi_events.testing import InMemoryBroker, TopicSnapshot

pytestmark = pytest.mark.anyio

FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Queue:
    """One topic of a fresh broker and a source reading it."""

    def __init__(self, *, redelivers: bool = False) -> None:
        self.broker = InMemoryBroker()
        self.source = self.broker.source("q", redelivers=redelivers)

    def put(self, body: bytes) -> str:
        return self.broker.publish_raw("q", body)

    def put_event(self, name: str, payload: Any = None, *, lane: str | None = None) -> str:
        return self.broker.publish("q", name, payload, key=lane)

    @property
    def state(self) -> TopicSnapshot:
        return self.broker.snapshot("q")

    @property
    def acked(self) -> list[str]:
        return self.state.acknowledged

    @property
    def dead(self) -> list[tuple[str, str, str, int]]:
        return [(d.message_id, d.reason, d.event_name, d.attempts) for d in self.state.dead_letters]


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

    queue = Queue()
    first = queue.put_event("order.created", {"id": 1})
    second = queue.put_event("order.paid", {"id": 2})
    consumer = Consumer(queue.source, handler, retry=FAST_RETRY)

    async def body() -> None:
        await until(lambda: len(queue.acked) == 2)

    await running(consumer, body)
    assert sorted(queue.acked) == sorted([first, second])
    assert sorted(map(str, seen)) == sorted(map(str, [("async", 1, "acme"), ("sync", 1), ("async", 2, "acme")]))
    assert queue.dead == []
    assert queue.source.opened
    assert queue.source.closed
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

    queue = Queue()
    bad = queue.put_event("always.fails", {})
    once = queue.put_event("fails.once", {})
    good = [queue.put_event("fine", {"n": n}) for n in range(20)]
    consumer = Consumer(queue.source, handler, retry=FAST_RETRY)

    async def body() -> None:
        await until(lambda: len(queue.acked) == 21 and len(queue.dead) == 1)

    await running(consumer, body)
    assert set(queue.acked) == {once, *good}
    [(mid, reason, name, attempts)] = queue.dead
    assert (mid, name, attempts) == (bad, "always.fails", 3)
    assert "handler failed after 3 attempt(s)" in reason
    assert "database is down" in reason
    assert calls["always.fails"] == 3
    assert calls["fails.once"] == 2
    assert consumer.stats.reasons == {"handler_failed": 1}


async def test_malformed_and_unknown_messages_are_dead_lettered_never_crash() -> None:
    handler = LocalHandler()
    handler.register(lambda event: None, event_name="known")
    queue = Queue()
    ids = [
        queue.put(b"\xff\xfe not utf-8"),
        queue.put(b"{not json"),
        queue.put(b'{"an": "object"}'),
        queue.put(b""),
        queue.put_event("nobody.listens", {}),
    ]
    ok = queue.put_event("known", {})
    consumer = Consumer(queue.source, handler, retry=FAST_RETRY)

    async def body() -> None:
        await until(lambda: len(queue.dead) == 5 and queue.acked == [ok])

    await running(consumer, body)
    reasons = {mid: reason for mid, reason, _, _ in queue.dead}
    assert set(reasons) == set(ids)
    assert "not valid UTF-8" in reasons[ids[0]]
    assert "not JSON" in reasons[ids[1]]
    assert "JSON array" in reasons[ids[2]]
    assert "empty" in reasons[ids[3]]
    assert "no handler registered for 'nobody.listens'" in reasons[ids[4]]
    assert consumer.stats.reasons == {"malformed": 4, "unknown": 1}


async def test_ignore_unknown_acknowledges_events_without_handlers() -> None:
    queue = Queue()
    mid = queue.put_event("nobody.listens", {})
    consumer = Consumer(queue.source, LocalHandler(), ignore_unknown=True)

    async def body() -> None:
        await until(lambda: queue.acked == [mid])

    await running(consumer, body)
    assert queue.dead == []


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

    queue = Queue()
    for n in range(10):
        for lane in ("a", "b"):
            queue.put_event("e", {"lane": lane, "n": n}, lane=lane)
    consumer = Consumer(queue.source, handler, concurrency=8)

    async def body() -> None:
        await until(lambda: len(queue.acked) == 20)

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

    queue = Queue()
    for n in range(60):
        queue.put_event("e", {"n": n})
    consumer = Consumer(queue.source, handler, concurrency=4)

    async def body() -> None:
        await until(lambda: len(queue.acked) == 60)

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

    queue = Queue()
    slow_id = queue.put_event("slow", {})
    broken_id = queue.put_event("broken", {})
    consumer = Consumer(queue.source, handler, retry=RetryPolicy(max_attempts=5, initial_delay=60, max_delay=60))
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(started.wait(), 5)
    await until(lambda: consumer.stats.retried == 1)
    consumer.stop()
    await asyncio.sleep(0.1)
    assert not task.done()  # still waiting for the running handler
    finish.set()
    stats = await asyncio.wait_for(task, 5)
    assert queue.acked == [slow_id]
    # Not acknowledged: back on the topic for the next consumer (a receive already under way when the stop
    # came may have picked it up once more and released it again).
    assert set(queue.state.released) == {broken_id}
    assert queue.broker.messages("q") == [("broken", {})]
    assert queue.dead == []
    assert queue.source.closed
    assert stats.released == len(queue.state.released)


async def test_shutdown_timeout_cancels_handlers_that_do_not_finish() -> None:
    handler = LocalHandler()
    started = asyncio.Event()

    @handler.register(event_name="*")
    async def forever(event: tuple[str, Any]) -> None:
        started.set()
        await asyncio.sleep(3600)

    queue = Queue()
    queue.put_event("e", {})
    consumer = Consumer(queue.source, handler, shutdown_timeout=0.2)
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(started.wait(), 5)
    consumer.stop()
    await asyncio.wait_for(task, 5)
    assert queue.acked == []
    assert queue.source.closed


async def test_redelivering_source_gets_messages_back_and_counts_attempts_from_the_broker() -> None:
    handler = LocalHandler()
    attempts: list[int] = []

    @handler.register(event_name="*")
    async def fails(event: tuple[str, Any]) -> None:
        attempts.append(1)
        raise ValueError("bad data")

    queue = Queue(redelivers=True)
    mid = queue.put_event("e", {})
    consumer = Consumer(queue.source, handler, retry=FAST_RETRY)

    async def body() -> None:
        await until(lambda: len(queue.dead) == 1)

    await running(consumer, body)
    assert [m for m, _ in queue.state.handed_back] == [mid, mid]
    assert all(0 <= delay <= 0.02 for _, delay in queue.state.handed_back)
    assert queue.dead[0][0] == mid
    assert queue.dead[0][3] == 3
    assert len(attempts) == 3


async def test_dead_lettering_is_retried_until_it_succeeds() -> None:
    queue = Queue()
    queue.broker.fail_next("q", 2, operation="dead_letter")
    queue.put(b"garbage")
    consumer = Consumer(queue.source, LocalHandler(), retry=FAST_RETRY)

    async def body() -> None:
        await until(lambda: len(queue.dead) == 1)

    await running(consumer, body)
    assert queue.acked == []


async def test_receive_errors_are_survived() -> None:
    queue = Queue()
    queue.broker.fail_next("q", 2, operation="receive")
    handler = LocalHandler()
    handler.register(lambda event: None, event_name="*")
    mid = queue.put_event("e", {})
    consumer = Consumer(queue.source, handler, retry=FAST_RETRY)

    async def body() -> None:
        await until(lambda: queue.acked == [mid])

    await running(consumer, body)


async def test_failed_ack_is_logged_and_the_message_delivered_again(caplog: pytest.LogCaptureFixture) -> None:
    queue = Queue()
    queue.broker.fail_next("q", 1, operation="ack")
    handled: list[int] = []
    handler = LocalHandler()
    handler.register(lambda event: handled.append(event[1]), event_name="*")
    first = queue.put_event("e", 1)
    second = queue.put_event("e", 2)
    consumer = Consumer(queue.source, handler)

    async def body() -> None:
        await until(lambda: len(queue.acked) == 2)

    await running(consumer, body)
    assert sorted(queue.acked) == sorted([first, second])
    assert sorted(handled) in ([1, 1, 2], [1, 2, 2])  # at least once: the unacknowledged one ran twice
    assert "will be delivered again" in caplog.text


async def test_source_that_cannot_open_yet_is_retried_and_stop_still_works() -> None:
    queue = Queue()
    queue.broker.fail_next("q", 2, operation="open")
    handler = LocalHandler()
    handler.register(lambda event: None, event_name="*")
    mid = queue.put_event("e", {})
    consumer = Consumer(queue.source, handler, retry=FAST_RETRY)

    async def body() -> None:
        await until(lambda: queue.acked == [mid])

    await running(consumer, body)

    never = Queue()
    with never.broker.unreachable("q"):
        stopped = Consumer(never.source, handler)
        task = asyncio.create_task(stopped.run())
        await asyncio.sleep(0.2)
        stopped.stop()
        await asyncio.wait_for(task, 5)
    assert never.source.closed
    assert not never.source.opened


async def test_handler_timeout_cancels_async_handlers_and_releases_the_slot_of_sync_ones() -> None:
    handler = LocalHandler()
    cancelled: list[int] = []
    sync_finished = threading.Event()

    @handler.register(event_name="async.hang")
    async def hang(event: tuple[str, Any]) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(event[1])
            raise

    @handler.register(event_name="sync.slow")
    def slow(event: tuple[str, Any]) -> None:
        sync_finished.wait(5)  # cannot be interrupted: runs on in its worker thread

    handler.register(lambda event: None, event_name="quick")
    queue = Queue()
    queue.put_event("async.hang", 1)
    queue.put_event("sync.slow", 2)
    quick = [queue.put_event("quick", n) for n in range(5)]
    # One slot: the quick events can only be handled once the timeouts released it.
    consumer = Consumer(queue.source, handler, concurrency=1, handler_timeout=0.2, retry=RetryPolicy(max_attempts=1))

    async def body() -> None:
        await until(lambda: len(queue.dead) == 2 and len(queue.acked) == 5)

    try:
        await running(consumer, body)
    finally:
        sync_finished.set()
    assert set(queue.acked) == set(quick)
    reasons = {name: reason for _, reason, name, _ in queue.dead}
    assert set(reasons) == {"async.hang", "sync.slow"}
    assert all("timed out after 0.2s" in reason for reason in reasons.values())
    assert cancelled == [1]
    assert consumer.stats.timed_out == 2
    assert consumer.stats.reasons == {"handler_timeout": 2}
