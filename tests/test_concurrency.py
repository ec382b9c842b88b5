"""Blocking calls run in the owner's named threads while the event loop keeps running."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from fastapi_events.concurrency import BlockingExecutor, run_once, start_thread

pytestmark = pytest.mark.anyio


async def test_blocking_call_runs_in_a_named_thread_while_the_loop_keeps_ticking() -> None:
    executor = BlockingExecutor("test-owner")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    def blocking() -> str:
        time.sleep(0.3)
        return threading.current_thread().name

    task = asyncio.create_task(ticker())
    try:
        name = await executor.run(blocking)
    finally:
        task.cancel()
        executor.shutdown()
    assert name.startswith("fastapi_events-test-owner")
    assert name != threading.current_thread().name
    assert ticks >= 5  # the loop ran during the 0.3 s call (30 ticks when idle; generous for a busy machine)


async def test_errors_reach_the_caller() -> None:
    executor = BlockingExecutor("test-errors")

    def fail() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        await executor.run(fail)
    executor.shutdown()


async def test_one_worker_keeps_submission_order_and_reopens_after_shutdown() -> None:
    executor = BlockingExecutor("test-order")
    seen: list[int] = []

    def record(value: int) -> None:
        time.sleep(0.01 * (5 - value))  # later calls are quicker: only ordering keeps them in sequence
        seen.append(value)

    await asyncio.gather(*(executor.run(record, value) for value in range(5)))
    assert seen == [0, 1, 2, 3, 4]
    executor.shutdown()
    assert await executor.run(lambda: 42) == 42
    executor.shutdown()


async def test_several_workers_run_calls_at_the_same_time() -> None:
    executor = BlockingExecutor("test-pool", workers=3)
    barrier = threading.Barrier(3, timeout=10)

    def meet() -> str:
        barrier.wait()  # only passes when three calls run at once
        return threading.current_thread().name

    names = await asyncio.gather(*(executor.run(meet) for _ in range(3)))
    executor.shutdown()
    assert len(set(names)) == 3


async def test_run_once_and_start_thread_name_their_threads() -> None:
    done = threading.Event()
    names: list[str] = []
    thread = start_thread("test-loop", lambda: (names.append(threading.current_thread().name), done.set()))
    assert thread.daemon
    assert await run_once("test-join", lambda: done.wait(10)) is True
    assert names == ["fastapi_events-test-loop"]


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BlockingExecutor("x", workers=0)
