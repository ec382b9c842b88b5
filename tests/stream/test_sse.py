"""SSE endpoint under a real uvicorn: framing, patterns, resume, gap, keep-alive, filter, bad payloads."""

from __future__ import annotations

import datetime
import decimal
import logging
from typing import Any

import httpx
import pytest

from fastapi_events.stream import EventStream
from tests.stream._sse_client import SSEReader, until
from tests.stream.apps import make_app, serve

pytestmark = pytest.mark.anyio


async def post(base: str, name: str, *payloads: Any) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.post(f"/dispatch/{name}", json=list(payloads))
        assert response.status_code == 200


async def test_events_dispatched_by_requests_arrive_as_sse_messages() -> None:
    with serve(make_app(EventStream())) as base:
        async with SSEReader(f"{base}/events") as reader:
            assert reader.status == 200
            await post(base, "order.placed", {"id": 1, "at": "2026-01-01"}, {"id": 2})
            await post(base, "user.signed_up", {"name": "Zoë"})
            messages = await reader.wait_messages(3)
    assert [(m.id, m.event, m.payload) for m in messages] == [
        ("1", "order.placed", {"id": 1, "at": "2026-01-01"}),
        ("2", "order.placed", {"id": 2}),
        ("3", "user.signed_up", {"name": "Zoë"}),
    ]


async def test_payload_uses_the_forwarders_json_encoding() -> None:
    stream = EventStream()
    subscription = await stream.subscribe().open()
    when = datetime.datetime(2026, 1, 2, 3, 4, 5)
    await stream.handle(("paid", {"amount": decimal.Decimal("10.10"), "at": when}))
    event = await anext(subscription)
    assert event.data == b'{"amount":"10.10","at":"2026-01-02T03:04:05"}'
    assert event.sse == b'id: 1\nevent: paid\ndata: {"amount":"10.10","at":"2026-01-02T03:04:05"}\n\n'


async def test_patterns_select_events() -> None:
    with serve(make_app(EventStream())) as base:
        async with SSEReader(f"{base}/events?events=order.*,user.signed_*") as reader:
            await post(base, "order.placed", 1)
            await post(base, "payment.done", 2)
            await post(base, "user.signed_up", 3)
            await post(base, "user.deleted", 4)
            await post(base, "order.shipped", 5)
            messages = await reader.wait_messages(3)
            await post(base, "end", 0)
    assert [(m.event, m.payload) for m in messages] == [
        ("order.placed", 1),
        ("user.signed_up", 3),
        ("order.shipped", 5),
    ]


async def test_resume_after_last_event_id_header_or_query() -> None:
    with serve(make_app(EventStream())) as base:
        await post(base, "n", *range(1, 6))  # ids 1..5, kept in history
        async with (
            SSEReader(f"{base}/events", {"Last-Event-ID": "2"}) as by_header,
            SSEReader(f"{base}/events?last_event_id=4") as by_query,
        ):
            await post(base, "n", 6)
            header_messages = await by_header.wait_messages(4)
            query_messages = await by_query.wait_messages(2)
    assert [(m.id, m.payload) for m in header_messages] == [("3", 3), ("4", 4), ("5", 5), ("6", 6)]
    assert [(m.id, m.payload) for m in query_messages] == [("5", 5), ("6", 6)]


async def test_gap_when_the_id_fell_out_of_the_history() -> None:
    with serve(make_app(EventStream(history=3))) as base:
        await post(base, "n", *range(1, 8))  # only 5, 6, 7 are kept
        async with (
            SSEReader(f"{base}/events", {"Last-Event-ID": "2"}) as gap,
            SSEReader(f"{base}/events", {"Last-Event-ID": "4"}) as no_gap,
            SSEReader(f"{base}/events", {"Last-Event-ID": "not-an-id"}) as garbage,
        ):
            got_gap = await gap.wait_messages(4)
            got_no_gap = await no_gap.wait_messages(3)
            got_garbage = await garbage.wait_messages(4)
    first = got_gap[0]
    assert (first.event, first.id, first.payload) == ("gap", None, {"last_event_id": "2", "first_id": "5"})
    assert [(m.id, m.payload) for m in got_gap[1:]] == [("5", 5), ("6", 6), ("7", 7)]
    assert [(m.event, m.id) for m in got_no_gap] == [("n", "5"), ("n", "6"), ("n", "7")]
    assert got_garbage[0].event == "gap"
    assert [m.id for m in got_garbage[1:]] == ["5", "6", "7"]


async def test_an_id_from_before_a_restart_is_a_gap() -> None:
    with serve(make_app(EventStream())) as base:
        await post(base, "n", 1)
        async with SSEReader(f"{base}/events", {"Last-Event-ID": "900"}) as reader:
            messages = await reader.wait_messages(2)
    assert messages[0].event == "gap"
    assert [(m.id, m.payload) for m in messages[1:]] == [("1", 1)]


async def test_keepalive_comments_while_idle() -> None:
    with serve(make_app(EventStream(keepalive=0.2))) as base:
        async with SSEReader(f"{base}/events") as reader:
            await until(lambda: len(reader.comments) >= 4, 10, "keep-alive comments")
    assert set(reader.comments) == {": keepalive"}


async def test_filter_hides_events_per_subscriber() -> None:
    def own_orders(connection: Any, event: Any) -> bool:
        return bool(event[1]["user"] == connection.query_params.get("user"))

    with serve(make_app(EventStream(filter=own_orders))) as base:
        async with SSEReader(f"{base}/events?user=ann") as ann, SSEReader(f"{base}/events?user=bob") as bob:
            await post(base, "order.placed", {"user": "ann", "n": 1}, {"user": "bob", "n": 2}, {"user": "ann", "n": 3})
            ann_got = await ann.wait_messages(2)
            bob_got = await bob.wait_messages(1)
    assert [m.payload["n"] for m in ann_got] == [1, 3]
    assert [m.payload["n"] for m in bob_got] == [2]


async def test_a_bad_payload_is_reported_and_the_others_still_flow(caplog: pytest.LogCaptureFixture) -> None:
    stream = EventStream()
    subscription = await stream.subscribe().open()
    with caplog.at_level(logging.ERROR, logger="fastapi_events"):
        await stream.handle_many([("ok", 1), ("broken", {"x": object()}), ("bad\nname", 2), ("ok", 3)])
    assert [(e.name, e.payload) for e in subscription.take()] == [("ok", 1), ("ok", 3)]
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "'broken'" in failures[0].getMessage()
    assert "builtins.object" in failures[0].getMessage()
    assert "line break" in failures[1].getMessage()


async def test_other_paths_and_methods() -> None:
    transport = httpx.ASGITransport(app=EventStream().app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        assert (await client.get("/nope")).status_code == 404
        response = await client.post("/")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET"
