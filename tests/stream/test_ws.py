"""WebSocket endpoint under a real uvicorn: JSON messages, patterns, resume, gap, refusal with 1008, origins."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from fastapi_events.stream import EventStream
from tests.stream.apps import make_app, serve
from tests.stream.test_sse import post

pytestmark = pytest.mark.anyio


def ws_url(base: str, query: str = "") -> str:
    return base.replace("http://", "ws://") + "/events/ws" + query


async def receive_json(ws: Any, count: int) -> list[dict[str, Any]]:
    return [json.loads(await asyncio.wait_for(ws.recv(decode=True), 10)) for _ in range(count)]


async def test_one_json_message_per_event_with_patterns() -> None:
    with serve(make_app(EventStream())) as base:
        async with connect(ws_url(base, "?events=order.*")) as ws:
            await post(base, "user.signed_up", {"u": 1})
            await post(base, "order.placed", {"id": 7}, {"id": 8})
            got = await receive_json(ws, 2)
    assert got == [
        {"id": "2", "name": "order.placed", "payload": {"id": 7}},
        {"id": "3", "name": "order.placed", "payload": {"id": 8}},
    ]


async def test_resume_and_gap_with_last_event_id() -> None:
    with serve(make_app(EventStream(history=2))) as base:
        await post(base, "n", 1, 2, 3, 4)  # 3 and 4 are kept
        async with connect(ws_url(base, "?last_event_id=3")) as resumed:
            assert await receive_json(resumed, 1) == [{"id": "4", "name": "n", "payload": 4}]
        async with connect(ws_url(base, "?last_event_id=1")) as gapped:
            got = await receive_json(gapped, 3)
    assert got[0] == {"id": None, "name": "gap", "payload": {"last_event_id": "1", "first_id": "3"}}
    assert [message["id"] for message in got[1:]] == ["3", "4"]


async def test_refused_websocket_closes_with_1008() -> None:
    with serve(make_app(EventStream(authorize=lambda connection: False))) as base:
        async with connect(ws_url(base)) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert "authorize" in closed.value.rcvd.reason


async def test_cross_origin_websocket_is_refused_unless_listed() -> None:
    with serve(make_app(EventStream())) as base:
        async with connect(ws_url(base), origin="http://evil.example") as ws:  # type: ignore[arg-type]
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, "cross-origin" in closed.value.rcvd.reason) == (1008, True)
        async with connect(ws_url(base), origin=base) as same_origin:  # type: ignore[arg-type]
            await post(base, "ok", 1)
            assert (await receive_json(same_origin, 1))[0]["name"] == "ok"
    with serve(make_app(EventStream(origins=["http://app.example"]))) as base:
        async with connect(ws_url(base), origin="http://app.example") as listed:  # type: ignore[arg-type]
            await post(base, "ok", 2)
            assert (await receive_json(listed, 1))[0]["payload"] == 2
