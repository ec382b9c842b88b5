# No `from __future__ import annotations`: FastAPI must see the Depends annotations of the handlers.
"""The shared hand-off of sync handlers and sync dependencies to worker threads, under concurrency."""

import asyncio
import contextvars
import multiprocessing
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from fastapi_events import drain
from fastapi_events._threads import run_sync
from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.typing import Event
from tests.apps import app_with

K = 5


def recording_app(handler: LocalHandler):  # type: ignore[no-untyped-def]
    app = app_with(handler)

    @app.get("/{request_id}")
    async def index(request_id: int) -> dict[str, str]:
        for i in range(K):
            dispatch("tick", payload={"request": request_id, "i": i})
        return {}

    return app


def sync_and_dependency_handlers() -> tuple[LocalHandler, dict[str, dict[int, list[int]]]]:
    seen: dict[str, dict[int, list[int]]] = {"sync": defaultdict(list), "dep": defaultdict(list)}
    handler = LocalHandler()

    def request_of(event: Event) -> int:
        return int(event[1]["request"])

    @handler.register(event_name="tick")
    def plain(event: Event) -> None:
        seen["sync"][event[1]["request"]].append(event[1]["i"])

    @handler.register(event_name="tick")
    async def with_sync_dependency(event: Event, request: int = Depends(request_of)) -> None:
        seen["dep"][request].append(event[1]["i"])

    return handler, seen


@pytest.mark.anyio
async def test_concurrent_requests_each_see_their_sync_handlers_done_in_order() -> None:
    handler, seen = sync_and_dependency_handlers()
    transport = httpx.ASGITransport(app=recording_app(handler))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

        async def one(request_id: int) -> None:
            response = await client.get(f"/{request_id}")
            assert response.status_code == 200
            # The ASGI call returned: this request's sync handler and sync dependency ran, in dispatch order.
            assert seen["sync"][request_id] == list(range(K))
            assert seen["dep"][request_id] == list(range(K))

        await asyncio.gather(*(one(i) for i in range(200)))
    assert len(seen["sync"]) == len(seen["dep"]) == 200


def test_testclient_from_many_threads_sees_every_effect_on_return() -> None:
    handler, seen = sync_and_dependency_handlers()
    with TestClient(recording_app(handler)) as client:

        def one(request_id: int) -> None:
            assert client.get(f"/{request_id}").status_code == 200
            assert seen["sync"][request_id] == list(range(K))
            assert seen["dep"][request_id] == list(range(K))

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(80)))


@pytest.mark.anyio
async def test_a_blocked_sync_handler_does_not_hold_up_the_others() -> None:
    release = threading.Event()
    blocked: list[int] = []
    fast: list[int] = []
    handler = LocalHandler()

    @handler.register(event_name="slow")
    def slow(event: Event) -> None:
        blocked.append(event[1])
        release.wait(30)

    @handler.register(event_name="fast")
    def quick(event: Event) -> None:
        fast.append(event[1])

    app = app_with(handler)

    @app.get("/{name}/{n}")
    async def index(name: str, n: int) -> dict[str, str]:
        dispatch(name, payload=n)
        return {}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        # Three blocked handlers, then fast ones queued right behind them (no later submit to notice the stall).
        slow_requests = [asyncio.create_task(client.get(f"/slow/{n}")) for n in range(3)]
        started = time.monotonic()
        responses = await asyncio.wait_for(asyncio.gather(*(client.get(f"/fast/{n}") for n in range(20))), 10)
        assert all(r.status_code == 200 for r in responses)
        assert sorted(fast) == list(range(20))
        assert time.monotonic() - started < 10
        assert not any(task.done() for task in slow_requests)
        release.set()
        assert all(r.status_code == 200 for r in await asyncio.gather(*slow_requests))
    assert sorted(blocked) == [0, 1, 2]


@pytest.mark.anyio
async def test_drain_waits_for_sync_handlers_of_events_dispatched_outside_requests() -> None:
    handled: list[int] = []
    handler = LocalHandler()

    @handler.register(event_name="bg")
    def record(event: Event) -> None:
        time.sleep(0.0005)
        handled.append(event[1])

    middleware = EventHandlerASGIMiddleware(app_with(), handlers=[handler], middleware_id=91_001)
    for n in range(300):
        dispatch("bg", payload=n, middleware_id=91_001)
        if n % 50 == 0:
            await asyncio.sleep(0)  # let batches go out while more are dispatched
    assert await drain(timeout=30)
    assert handled == list(range(300))  # one handler: dispatch order
    del middleware


@pytest.mark.anyio
async def test_run_sync_results_exceptions_and_context_reach_their_own_caller() -> None:
    var: contextvars.ContextVar[int] = contextvars.ContextVar("var")

    def work(n: int) -> int:
        if n % 7 == 0:
            raise ValueError(n)
        return n * 10 + var.get()

    async def one(n: int) -> None:
        var.set(n % 3)
        if n % 7 == 0:
            with pytest.raises(ValueError, match=f"^{n}$"):
                await run_sync(work, n)
        else:
            assert await run_sync(work, n) == n * 10 + n % 3

    await asyncio.gather(*(one(n) for n in range(500)))


@pytest.mark.anyio
async def test_a_cancelled_caller_does_not_break_the_others() -> None:
    gate = threading.Event()
    task = asyncio.create_task(run_sync(gate.wait, 10))
    others = [asyncio.create_task(run_sync(lambda n=n: n)) for n in range(10)]
    await asyncio.sleep(0.01)
    task.cancel()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.gather(*others) == list(range(10))


def test_a_loop_closed_while_its_job_runs_leaves_the_pool_usable() -> None:
    gate = threading.Event()

    async def abandon() -> None:
        asyncio.get_running_loop().create_task(run_sync(gate.wait, 10))
        await asyncio.sleep(0.01)

    asyncio.run(abandon())  # the loop closes with the job still running
    gate.set()
    for n in range(3):  # a new loop per call, as TestClient without `with` does
        assert asyncio.run(run_sync(lambda n=n: n + 1)) == n + 1


def _child(queue: "multiprocessing.Queue[int]") -> None:
    queue.put(asyncio.run(run_sync(lambda: 42)))


def test_sync_handlers_work_in_a_forked_child_after_the_parent_used_the_pool() -> None:
    assert asyncio.run(run_sync(lambda: 1)) == 1  # the parent's workers exist now
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child, args=(queue,))
    child.start()
    try:
        assert queue.get(timeout=20) == 42
    finally:
        child.join(20)
    assert child.exitcode == 0
