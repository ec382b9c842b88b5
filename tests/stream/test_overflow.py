"""Bounded queues: a subscriber that falls behind gets ``overflow`` and is cut off; nobody else is slowed."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from fastapi_events.stream import EventStream, SubscriptionOverflow
from tests.stream._sse_client import SSEReader, until
from tests.stream.apps import make_app, serve
from tests.stream.test_sse import post

pytestmark = pytest.mark.anyio


async def test_in_process_subscription_overflows_and_others_keep_everything() -> None:
    stream = EventStream(queue_size=3)
    async with stream.subscribe() as slow, stream.subscribe(queue_size=100) as fast:
        await stream.handle_many([("n", i) for i in range(5)])
        with pytest.raises(SubscriptionOverflow, match="more than 3 events behind"):
            await anext(slow)
        assert [event.payload for event in fast.take()] == [0, 1, 2, 3, 4]


async def test_sse_subscriber_that_stops_reading_gets_overflow_then_the_end() -> None:
    stream = EventStream(queue_size=2)
    released = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and len(sent) > 2:
            await released.wait()  # the client stopped reading

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    scope = {"type": "http", "method": "GET", "path": "/", "root_path": "", "query_string": b"", "headers": []}
    scope["client"] = ("127.0.0.1", 5000)
    request = asyncio.create_task(stream.app(scope, receive, send))  # type: ignore[arg-type]
    await until(lambda: stream.subscriber_count == 1, 5, "the subscription")
    await stream.handle(("first", 1))  # taken by the writer, which then blocks in send
    await until(lambda: len(sent) == 3, 5, "the first event to be sent")
    started = time.monotonic()
    await stream.handle_many([("n", i) for i in range(10)])  # never waits for the stuck client
    assert time.monotonic() - started < 0.5
    released.set()
    await asyncio.wait_for(request, 5)
    bodies = [message["body"] for message in sent if message["type"] == "http.response.body"]
    assert bodies[1].startswith(b"id: 1\nevent: first\n")
    assert bodies[-1].startswith(b"event: overflow\ndata: ")
    assert b"more than 2 events behind" in bodies[-1]
    assert sent[-1].get("more_body", False) is False
    assert stream.subscriber_count == 0


def _stuck_client(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /events/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock


async def test_a_stuck_client_is_dropped_without_slowing_the_app_or_other_subscribers() -> None:
    # Room for a reader sharing a busy CPU with the server; the stuck one overflows after its kernel buffers (a few
    # MB) and 100 more events.
    stream = EventStream(queue_size=100, send_timeout=1.0)
    big = "x" * 65536
    with serve(make_app(stream)) as base:
        port = int(base.rsplit(":", 1)[1])
        stuck = await asyncio.to_thread(_stuck_client, port)
        try:
            async with SSEReader(f"{base}/events") as fast:
                await until(lambda: stream.subscriber_count == 2, 10, "both subscribers")
                started = time.monotonic()
                for first in range(0, 400, 20):
                    await post(base, "big", *({"n": n, "pad": big} for n in range(first, first + 20)))
                dispatch_seconds = time.monotonic() - started
                messages = await fast.wait_messages(400, timeout=60)
                # The stuck one was dropped: only the fast subscriber is left.
                await until(lambda: stream.subscriber_count == 1, 15, "the stuck subscriber to be dropped")
            assert [m.payload["n"] for m in messages] == list(range(400))
            assert dispatch_seconds < 20, dispatch_seconds
            # What the kernel buffered for it still trickles out through its tiny window; no need to wait for that.
            assert stuck.recv(12) == b"HTTP/1.1 200"
        finally:
            stuck.close()
