from __future__ import annotations

import asyncio
import gc
import logging
import random
import threading
import time
from collections.abc import Iterable

import httpx
import pytest
from fastapi import BackgroundTasks, WebSocket
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fastapi_events import drain
from fastapi_events._runtime import EventBuffer, get_runtime
from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.base import BaseEventHandler
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.stream import EventStream
from fastapi_events.typing import Event
from tests.apps import Recorder, app_with
from tests.stream.apps import make_app, serve


def test_starlette_app_with_middleware_class() -> None:
    recorder = Recorder()

    async def root(request: Request) -> JSONResponse:
        dispatch("new event", payload={"id": 1})
        return JSONResponse({})

    app = Starlette(
        routes=[Route("/", root)],
        middleware=[Middleware(EventHandlerASGIMiddleware, handlers=[recorder])],
    )
    with TestClient(app) as client:
        client.get("/")
    assert recorder.events == [("new event", {"id": 1})]


def test_events_are_handled_after_the_response_and_before_testclient_returns() -> None:
    order: list[str] = []

    class Tracker(BaseEventHandler):
        async def handle(self, event):
            order.append(f"handled {event[0]}")

    app = app_with(Tracker())

    @app.get("/")
    async def index() -> dict[str, str]:
        dispatch("first")
        order.append("endpoint returned")
        return {}

    client = TestClient(app)  # no `with`: a new event loop per request, nothing may be left behind
    assert client.get("/").status_code == 200
    assert order == ["endpoint returned", "handled first"]


def test_handle_many_is_preferred_and_handle_is_the_fallback() -> None:
    one_by_one: list[str] = []

    class OneByOne(BaseEventHandler):
        async def handle(self, event):
            one_by_one.append(event[0])

    batches = Recorder()
    app = app_with(batches, OneByOne())

    @app.get("/")
    async def index() -> dict[str, str]:
        dispatch("a")
        dispatch("b")
        return {}

    TestClient(app).get("/")
    assert batches.batches == [[("a", None), ("b", None)]]
    assert one_by_one == ["a", "b"]


def test_no_loss_from_tasks_background_tasks_streaming_and_threads() -> None:
    recorder = Recorder()
    app = app_with(recorder)
    spawned: list[asyncio.Task[None]] = []

    async def late() -> None:
        await asyncio.sleep(0.05)  # well after the response
        dispatch("from-task-after-response")

    @app.get("/task")
    async def task_route() -> dict[str, str]:
        spawned.append(asyncio.create_task(late()))
        return {}

    @app.get("/background")
    async def background_route(tasks: BackgroundTasks) -> dict[str, str]:
        tasks.add_task(dispatch, "from-background-task")
        return {}

    @app.get("/stream")
    async def stream_route() -> StreamingResponse:
        async def body():
            for i in range(3):
                dispatch("from-stream", i)
                yield f"{i}\n"

        return StreamingResponse(body())

    @app.get("/sync")
    def sync_route() -> dict[str, str]:
        assert threading.current_thread() is not threading.main_thread()
        dispatch("from-sync-endpoint")
        return {}

    with TestClient(app) as client:
        for path in ("/task", "/background", "/stream", "/sync"):
            assert client.get(path).status_code == 200
        client.portal.call(asyncio.wait, spawned)
        assert client.portal.call(drain, 5)
    assert sorted(name for name, _ in recorder.events) == sorted(
        [
            "from-task-after-response",
            "from-background-task",
            "from-stream",
            "from-stream",
            "from-stream",
            "from-sync-endpoint",
        ]
    )


def test_chained_events_and_sync_handlers_dispatching_from_threads() -> None:
    handler = LocalHandler()
    seen: list[str] = []

    @handler.register(event_name="start")
    def sync_start(event) -> None:
        seen.append(f"sync:{threading.current_thread().name.split('_')[0]}")
        dispatch("chained-from-sync")

    @handler.register(event_name="chained-*")
    async def chained(event) -> None:
        seen.append(event[0])
        if event[0] == "chained-from-sync":
            dispatch("chained-from-async")

    app = app_with(handler)

    @app.get("/")
    async def index() -> dict[str, str]:
        dispatch("start")
        return {}

    TestClient(app).get("/")
    assert seen == ["sync:fastapi", "chained-from-sync", "chained-from-async"]


@pytest.mark.anyio
async def test_a_failing_handler_never_stops_others_nor_reaches_the_server(caplog) -> None:
    handler = LocalHandler()
    good: list[str] = []
    hook_calls: list[tuple[str, str, str]] = []

    @handler.register(event_name="*")
    async def explodes(event) -> None:
        if event[0] == "bad":
            raise ValueError("boom")

    @handler.register(event_name="*")
    def also_explodes_sync(event) -> None:
        if event[0] == "bad":
            raise KeyError("sync boom")

    @handler.register(event_name="*")
    async def fine(event) -> None:
        good.append(event[0])

    class BrokenBatch(BaseEventHandler):
        async def handle_many(self, events) -> None:
            raise RuntimeError("whole batch")

    async def on_error(event, handler_name, exc) -> None:
        hook_calls.append((event[0], handler_name.rsplit(".", 1)[-1], type(exc).__name__))

    app = app_with(handler, BrokenBatch(), on_error=on_error)

    @app.get("/")
    async def index() -> dict[str, str]:
        dispatch("good-1")
        dispatch("bad")
        dispatch("good-2")
        return {}

    with caplog.at_level(logging.ERROR, logger="fastapi_events"):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            assert (await client.get("/")).status_code == 200
        await drain(5)
    assert good == ["good-1", "bad", "good-2"]
    messages = [r.getMessage() for r in caplog.records if r.name == "fastapi_events"]
    assert any("explodes" in m and "'bad'" in m and "ValueError" in m for m in messages)
    assert any("also_explodes_sync" in m and "KeyError" in m for m in messages)
    assert any("BrokenBatch" in m and "good-1" in m and "RuntimeError" in m for m in messages)
    assert ("bad", "explodes", "ValueError") in hook_calls
    assert ("bad", "also_explodes_sync", "KeyError") in hook_calls
    assert {call[0] for call in hook_calls if call[1] == "BrokenBatch"} == {"good-1", "bad", "good-2"}


def test_each_handler_receives_a_requests_events_in_dispatch_order() -> None:
    handler = LocalHandler()
    got: dict[str, list[int]] = {"slow": [], "sync": []}

    @handler.register(event_name="n")
    async def slow(event) -> None:
        await asyncio.sleep(random.random() / 500)
        got["slow"].append(event[1])

    @handler.register(event_name="n")
    def sync(event) -> None:
        got["sync"].append(event[1])

    app = app_with(handler)

    @app.get("/")
    async def index() -> dict[str, str]:
        for i in range(30):
            dispatch("n", i)
            if i % 7 == 0:
                asyncio.get_running_loop().call_soon(dispatch, "n", 100 + i)  # late: after the response
        return {}

    with TestClient(app) as client:
        client.get("/")
        client.portal.call(drain, 5)
    expected = list(range(30))
    for values in got.values():
        assert [v for v in values if v < 100] == expected
        assert sorted(v for v in values if v >= 100) == [100, 107, 114, 121, 128]


def test_websocket_events_are_handled_while_the_connection_is_open() -> None:
    handler = LocalHandler()
    handled = threading.Event()

    @handler.register(event_name="ws-message")
    async def on_message(event) -> None:
        handled.set()

    app = app_with(handler)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        dispatch("ws-message", text)
        for _ in range(200):
            if handled.is_set():
                break
            await asyncio.sleep(0.005)
        await websocket.send_text("handled" if handled.is_set() else "still pending")
        await websocket.receive_text()

    with TestClient(app) as client, client.websocket_connect("/ws") as websocket:
        websocket.send_text("hello")
        assert websocket.receive_text() == "handled"
        websocket.send_text("bye")


def test_events_of_a_failing_request_are_still_handled() -> None:
    recorder = Recorder()
    app = app_with(recorder)

    @app.get("/")
    async def index() -> dict[str, str]:
        dispatch("before-crash")
        raise RuntimeError("endpoint bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/").status_code == 500
        client.portal.call(drain, 5)
    assert recorder.events == [("before-crash", None)]


def test_no_buffers_or_tasks_are_retained_across_requests() -> None:
    handler = LocalHandler()

    @handler.register(event_name="*")
    async def noop(event) -> None:
        await asyncio.sleep(0)

    app = app_with(handler, middleware_id=777_001)

    @app.get("/")
    async def index() -> dict[str, str]:
        dispatch("x", {"big": "y" * 1000})
        return {}

    with TestClient(app) as client:
        for _ in range(200):
            client.get("/")
        client.portal.call(drain, 5)
        gc.collect()
        alive = [o for o in gc.get_objects() if isinstance(o, EventBuffer) and not o.live]
        runtime = get_runtime(777_001)
        assert runtime is not None
        assert runtime._tasks == set()
        assert alive == []
        buffers = [o for o in gc.get_objects() if isinstance(o, EventBuffer) and o.runtime is runtime]
        assert buffers == [runtime.background]


def test_events_keep_flowing_after_an_event_loop_closed_mid_handling(caplog) -> None:
    # TestClient without `with` runs every request on a new event loop; work cut off by a closing loop is
    # reported by name, and the next loop handles new events normally.
    handler = LocalHandler()
    seen: list[str] = []

    @handler.register(event_name="*")
    async def slow(event) -> None:
        await asyncio.sleep(0.2 if event[0] == "first" else 0)
        seen.append(event[0])

    stack = app_with(handler, middleware_id=777_002).build_middleware_stack()  # keeps the runtime alive

    async def first_loop() -> None:
        dispatch("first", middleware_id=777_002)
        await asyncio.sleep(0.01)  # the handler is now sleeping; the loop closes under it

    async def second_loop() -> bool:
        dispatch("second", middleware_id=777_002)
        return await drain(5)

    with caplog.at_level(logging.ERROR, logger="fastapi_events"):
        asyncio.run(first_loop())
        assert asyncio.run(second_loop()) is True
    assert seen == ["second"]
    assert stack is not None
    assert any("cancelled while handling 1 event(s) ['first']" in r.getMessage() for r in caplog.records)


def test_events_of_a_streaming_response_are_handled_while_it_streams() -> None:
    """Under uvicorn: three events dispatched one second apart while the body streams are each handled at once."""
    handled: list[tuple[object, float]] = []

    class Clock(BaseEventHandler):
        async def handle_many(self, events: Iterable[Event]) -> None:
            handled.extend((event[1]["n"], time.monotonic()) for event in events)

    chunks: list[tuple[bytes, float]] = []
    with serve(make_app(EventStream(), Clock())) as base, httpx.stream("GET", f"{base}/slow-stream") as response:
        for chunk in response.iter_raw():
            chunks.append((chunk, time.monotonic()))
    ended = chunks[-1][1]
    assert b"".join(chunk for chunk, _ in chunks) == b"tick 0\ntick 1\ntick 2\ndone\n"
    assert [n for n, _ in handled] == [0, 1, 2]
    # Each event is handled about when it was dispatched (1 s apart), not when the stream ends.
    assert all(at < ended - 0.5 for _, at in handled[:2]), (handled, ended)
    assert handled[0][1] < handled[2][1] - 1.0
