"""Who may subscribe: loopback-only by default (with the reason in the 403), ``authorize=`` sync or async."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.requests import HTTPConnection

from fastapi_events.stream import EventStream
from tests.stream._sse_client import SSEReader
from tests.stream.apps import make_app, serve
from tests.stream.test_sse import post

pytestmark = pytest.mark.anyio


async def get(stream: EventStream, client: tuple[str, int], **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=stream.app, client=client)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        return await http.get("/", headers=headers)


async def test_default_refuses_remote_clients_and_says_why() -> None:
    response = await get(EventStream(), ("203.0.113.9", 4000))
    assert response.status_code == 403
    assert "203.0.113.9" in response.text
    assert "only loopback clients" in response.text
    assert "EventStream(authorize=...)" in response.text


@pytest.mark.parametrize("header", ["x-forwarded-for", "forwarded", "x-real-ip"])
async def test_default_refuses_requests_through_a_proxy(header: str) -> None:
    # A reverse proxy on the same host makes every client look like loopback.
    response = await get(EventStream(), ("127.0.0.1", 4000), **{header: "203.0.113.9"})
    assert response.status_code == 403
    assert header in response.text


async def test_default_refuses_a_non_loopback_host_header() -> None:
    # DNS rebinding: a remote page whose host name resolves to 127.0.0.1.
    response = await get(EventStream(), ("127.0.0.1", 4000), host="attacker.example:8000")
    assert response.status_code == 403
    assert "attacker.example" in response.text


@pytest.mark.parametrize("use_async", [False, True])
async def test_authorize_hook_decides(use_async: bool) -> None:
    seen: list[str] = []

    def sync_check(connection: HTTPConnection) -> bool:
        seen.append(connection.headers.get("x-token", ""))
        return connection.headers.get("x-token") == "secret"

    async def async_check(connection: HTTPConnection) -> bool:
        return sync_check(connection)

    stream = EventStream(authorize=async_check if use_async else sync_check)
    refused = await get(stream, ("203.0.113.9", 4000), **{"x-token": "wrong"})
    assert (refused.status_code, refused.text) == (403, "event stream refused by the app's authorize hook\n")
    with serve(make_app(stream)) as base:
        async with SSEReader(f"{base}/events", {"x-token": "secret"}) as reader:
            await post(base, "allowed", 1)
            assert [m.payload for m in await reader.wait_messages(1)] == [1]
    assert seen == ["wrong", "secret"]


async def test_a_failing_authorize_hook_is_a_logged_500(caplog: pytest.LogCaptureFixture) -> None:
    def broken(connection: HTTPConnection) -> bool:
        raise KeyError("user")

    with caplog.at_level(logging.ERROR, logger="fastapi_events.stream"):
        response = await get(EventStream(authorize=broken), ("127.0.0.1", 4000))
    assert response.status_code == 500
    assert "authorize hook failed" in response.text
    assert any(record.exc_info and record.exc_info[0] is KeyError for record in caplog.records)
