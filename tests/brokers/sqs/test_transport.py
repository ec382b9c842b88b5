"""SQSTransport against moto_server: per-entry results, attributes, FIFO, limits, never blocking the loop."""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

import pytest

from fastapi_events.brokers.sqs import SQS_MAX_BYTES, SQSTransport
from fastapi_events.codec import (
    ATTR_EVENT_ID,
    ATTR_EVENT_NAME,
    ATTR_TRACEPARENT,
    attributes_for,
    decode_event,
    encode_event,
)
from fastapi_events.delivery import OutboundMessage, Outcome
from tests._loop_lag import LOOP_TIMING, loop_lag, stalls
from tests._servers import MotoServer
from tests._sqs import Queue


class TracedEvent(tuple):  # type: ignore[type-arg]
    """Like the events the OpenTelemetry integration dispatches: a 2-tuple carrying trace context."""

    trace_context: ClassVar[dict[str, str]] = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def _message(name: str, payload: object, event_id: str, key: str | None = None) -> OutboundMessage:
    event = (name, payload)
    return OutboundMessage(event_id, name, encode_event(event), attributes_for(event, event_id), key)


@pytest.mark.anyio
async def test_batch_is_delivered_with_name_id_and_trace_attributes(sqs_queue: Queue) -> None:
    transport = SQSTransport(sqs_queue.name, sqs_queue.region, **sqs_queue.handler_kwargs)
    await transport.open()  # resolves the queue name to its URL
    assert transport.queue_url == sqs_queue.url
    traced = TracedEvent(("order.paid", {"n": 2}))
    messages = [
        _message("order.created", {"n": 1}, "id-1"),
        OutboundMessage("id-2", "order.paid", encode_event(traced), attributes_for(traced, "id-2")),
    ]
    results = await transport.send_batch(messages)
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    received = await asyncio.to_thread(sqs_queue.receive, 2)
    by_id = {r.event_id: r for r in received}
    assert decode_event(by_id["id-1"].body) == ("order.created", {"n": 1})
    assert by_id["id-1"].attributes == {ATTR_EVENT_NAME: "order.created", ATTR_EVENT_ID: "id-1"}
    assert by_id["id-2"].attributes[ATTR_TRACEPARENT] == TracedEvent.trace_context["traceparent"]
    await transport.close()


@pytest.mark.anyio
async def test_size_counts_body_and_attributes_against_the_256_kib_limit(sqs_queue: Queue) -> None:
    transport = SQSTransport(sqs_queue.url, sqs_queue.region, **sqs_queue.handler_kwargs)
    message = _message("e", "x" * 100, "abc")
    expected = len(message.body) + sum(len(k) + len("String") + len(v) for k, v in message.attributes.items())
    assert transport.message_size(message) == expected
    assert transport.max_batch_count == 10
    assert transport.max_batch_bytes == transport.max_message_bytes == SQS_MAX_BYTES == 262144


@pytest.mark.anyio
async def test_fifo_group_and_deduplication_ids(moto_server: MotoServer) -> None:
    queue = Queue(dict(moto_server.client_kwargs), name=f"orders-{time.monotonic_ns()}.fifo")
    transport = SQSTransport(queue.name, queue.region, **queue.handler_kwargs)
    await transport.open()
    first = _message("order.created", {"n": 1}, "evt-1")
    keyed = _message("order.created", {"n": 2}, "evt-2", key="customer-7")
    assert [r.outcome for r in await transport.send_batch([first, keyed])] == [Outcome.DELIVERED] * 2
    # The same event sent again (a retry after a lost acknowledgement) is deduplicated by its stable id.
    assert [r.outcome for r in await transport.send_batch([first])] == [Outcome.DELIVERED]
    received = await asyncio.to_thread(queue.receive, 2)
    await asyncio.to_thread(queue.drain_rest)
    assert len(received) == 2
    groups = {r.event_id: r.raw["Attributes"]["MessageGroupId"] for r in received}
    dedup = {r.event_id: r.raw["Attributes"]["MessageDeduplicationId"] for r in received}
    assert groups == {"evt-1": "order.created", "evt-2": "customer-7"}
    assert dedup == {"evt-1": "evt-1", "evt-2": "evt-2"}
    await transport.close()


@pytest.mark.anyio
async def test_fifo_callables_override_the_defaults(moto_server: MotoServer) -> None:
    queue = Queue(dict(moto_server.client_kwargs), name=f"custom-{time.monotonic_ns()}.fifo")
    transport = SQSTransport(
        queue.url,
        queue.region,
        message_group_id=lambda m: "all",
        deduplication_id=lambda m: f"d-{m.id}",
        **queue.handler_kwargs,
    )
    await transport.open()
    await transport.send_batch([_message("a", 1, "x1"), _message("b", 2, "x2")])
    received = await asyncio.to_thread(queue.receive, 2)
    assert {r.raw["Attributes"]["MessageGroupId"] for r in received} == {"all"}
    assert {r.raw["Attributes"]["MessageDeduplicationId"] for r in received} == {"d-x1", "d-x2"}
    await transport.close()


@pytest.mark.anyio
async def test_entry_the_transport_cannot_build_fails_alone(sqs_queue: Queue) -> None:
    transport = SQSTransport(sqs_queue.url, sqs_queue.region, **sqs_queue.handler_kwargs)
    await transport.open()
    not_utf8 = OutboundMessage("bad", "bin", b"\xff\xfe", {ATTR_EVENT_NAME: "bin", ATTR_EVENT_ID: "bad"})
    results = await transport.send_batch([_message("ok", 1, "good"), not_utf8])
    assert results[0].outcome is Outcome.DELIVERED
    assert results[1].outcome is Outcome.PERMANENT
    assert "UnicodeDecodeError" in results[1].reason
    await transport.close()


@pytest.mark.anyio
async def test_unreachable_broker_raises_so_the_batch_is_retried() -> None:
    transport = SQSTransport(
        "http://127.0.0.1:9/123456789012/q",
        "us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    await transport.open()  # a URL needs no lookup
    started = time.monotonic()
    with pytest.raises(Exception, match="Could not connect"):
        await transport.send_batch([_message("e", 1, "i")])
    assert time.monotonic() - started < 5  # no minute-long boto3 retry loop holding the worker thread
    await transport.close()


@pytest.mark.anyio
@pytest.mark.serial(reason=LOOP_TIMING)
async def test_sending_never_blocks_the_event_loop(sqs_queue: Queue) -> None:
    transport = SQSTransport(sqs_queue.url, sqs_queue.region, **sqs_queue.handler_kwargs)
    await transport.open()
    async with loop_lag() as lags:
        started = time.perf_counter()
        for round_ in range(15):
            batch = [_message("e", {"r": round_, "i": i}, f"{round_}-{i}") for i in range(10)]
            assert all(r.outcome is Outcome.DELIVERED for r in await transport.send_batch(batch))
        elapsed = time.perf_counter() - started
    # 15 HTTP round trips to moto took `elapsed`; on the loop they would be 15 stalls of 40+ ms each. The few
    # allowed cover the OS descheduling a busy test machine.
    assert elapsed > 0.1
    stalled = stalls(lags)
    assert len(stalled) <= 3, f"event loop stalled {len(stalled)} times: {[round(x * 1000) for x in stalled]} ms"
    await transport.close()


@pytest.mark.anyio
async def test_attributes_sqs_cannot_carry_are_dropped_not_fatal(sqs_queue: Queue) -> None:
    transport = SQSTransport(sqs_queue.url, sqs_queue.region, **sqs_queue.handler_kwargs)
    await transport.open()
    propagated = {"AWS.reserved": "x", "bad name": "x", "baggage": "k=v"} | {f"extra-{i}": "v" for i in range(12)}
    message = _message("e", 1, "the-id")
    message = OutboundMessage(message.id, message.event_name, message.body, {**propagated, **message.attributes})
    assert [r.outcome for r in await transport.send_batch([message])] == [Outcome.DELIVERED]
    (received,) = await asyncio.to_thread(sqs_queue.receive, 1)
    assert len(received.attributes) == 10  # SQS's maximum
    assert received.attributes[ATTR_EVENT_NAME] == "e"
    assert received.attributes[ATTR_EVENT_ID] == "the-id"
    assert received.attributes["baggage"] == "k=v"
    assert "AWS.reserved" not in received.attributes
    assert "bad name" not in received.attributes
    await transport.close()
