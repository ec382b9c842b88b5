"""ForwardHandler end to end through the real app path (middleware + dispatch) to a real SQS server."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

import fastapi_events
from fastapi_events.concurrency import thread_name
from fastapi_events.delivery import OutboundMessage
from fastapi_events.delivery._spool import SpoolDB
from fastapi_events.handlers.aws import SQSForwardHandler
from tests._servers import MotoServer, wait_for
from tests._sqs import Queue
from tests.delivery._app import make_app


@pytest.mark.anyio
@pytest.mark.parametrize("durable", [False, True], ids=["memory", "spool"])
async def test_broker_killed_mid_stream_and_restarted_nothing_lost(
    durable: bool, fresh_moto_server: Any, tmp_path: Path
) -> None:
    server: MotoServer = await asyncio.to_thread(fresh_moto_server)
    queue = await asyncio.to_thread(Queue, dict(server.client_kwargs))
    handler = SQSForwardHandler(
        queue.name,
        queue.region,
        spool_path=str(tmp_path / "spool.db") if durable else None,
        reconnect_max_delay=0.3,
        **queue.handler_kwargs,
    )
    app = make_app(handler)
    total = 400
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:

        async def produce() -> None:
            for i in range(0, total, 2):
                response = await client.post("/events/tick", json=[i, i + 1])
                assert response.status_code == 200
                await asyncio.sleep(0.01)

        producer = asyncio.create_task(produce())
        for _ in range(3000):
            if handler.stats.delivered >= 40:
                break
            await asyncio.sleep(0.01)
        # Deliberately blocking the loop: no new send can start, sends already queued in the transport's
        # thread finish, and the consumer takes everything moto holds - moto forgets its queues when killed,
        # and that loss is moto's, not ours. Then the broker dies while the app keeps dispatching.
        queue.drain_rest(settle=2.0)
        server.kill()
        before_kill = handler.stats.delivered
        assert len(queue.received) >= before_kill
        await asyncio.sleep(0.5)
        assert not producer.done()  # the stream goes on while the broker is down
        await asyncio.to_thread(server.restart)
        await asyncio.to_thread(queue.create)
        await producer
        assert await fastapi_events.drain(60)
    stats = handler.stats
    assert stats.accepted == total
    assert stats.delivered >= total  # re-sends after the restart may deliver an entry twice, never zero
    assert stats.retried > 0
    assert stats.dropped == 0
    await asyncio.to_thread(queue.receive, total, 90)  # moto is slow on a loaded machine
    assert set(queue.payloads()) == set(range(total))
    await handler.shutdown(5)


def test_unencodable_and_oversize_events_become_dead_letters_while_the_rest_arrive(
    moto_server: MotoServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    queue = Queue(dict(moto_server.client_kwargs))
    spool = str(tmp_path / "spool.db")
    called: list[tuple[OutboundMessage, str]] = []
    handler = SQSForwardHandler(
        queue.name,
        queue.region,
        spool_path=spool,
        on_dead_letter=lambda message, reason: called.append((message, reason)),
        **queue.handler_kwargs,
    )
    with caplog.at_level(logging.ERROR, logger="fastapi_events"), TestClient(make_app(handler)) as client:
        assert client.post("/events/ok", json=[1, 2, 3]).status_code == 200
        assert client.post("/unencodable").status_code == 200
        assert client.post("/events/ok", json=[4]).status_code == 200
        assert client.post("/oversize").status_code == 200
        assert client.post("/events/ok", json=[5, 6]).status_code == 200
    # Lifespan shutdown flushed the forwarder: the six good events are at the broker.
    queue.receive(6)
    queue.drain_rest()
    assert sorted(queue.payloads()) == [1, 2, 3, 4, 5, 6]
    assert {r.event_name for r in queue.received} == {"ok"}

    db = SpoolDB(spool)
    try:
        dead = {r.event_name: r for r in db.list_dead()}
        assert db.count_pending() == 0
    finally:
        db.close()
    assert set(dead) == {"bad.event", "big.event"}
    assert "Unencodable" in dead["bad.event"].reason
    assert not dead["bad.event"].replayable
    assert "over the 262144-byte limit" in dead["big.event"].reason
    assert dead["big.event"].replayable
    assert sorted(m.event_name for m, _ in called) == ["bad.event", "big.event"]
    logged = [r for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert sorted(getattr(r, "event_name", "") for r in logged) == ["bad.event", "big.event"]
    assert all(r.levelno == logging.ERROR for r in logged)
    assert handler.stats.dead_lettered == 2


def test_broker_rejecting_one_message_of_a_batch_dead_letters_only_that_one(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    # The queue accepts at most 1 KiB per message: SQS rejects the whole batch request for the large entry;
    # the transport isolates it, and only that event becomes a dead letter.
    queue = Queue(dict(moto_server.client_kwargs), attributes={"MaximumMessageSize": "1024"})
    spool = str(tmp_path / "spool.db")
    handler = SQSForwardHandler(queue.name, queue.region, spool_path=spool, **queue.handler_kwargs)
    with TestClient(make_app(handler)) as client:
        client.post("/events/small", json=[1, 2, 3, 4])
        client.post("/events/large", json=["y" * 2000])
        client.post("/events/small", json=[5, 6])
    queue.receive(6)
    queue.drain_rest()
    assert sorted(queue.payloads()) == [1, 2, 3, 4, 5, 6]
    db = SpoolDB(spool)
    try:
        dead = db.list_dead()
    finally:
        db.close()
    assert [r.event_name for r in dead] == ["large"]
    assert "rejected by broker" in dead[0].reason
    assert "InvalidParameterValue" in dead[0].reason


@pytest.mark.anyio
async def test_flush_waits_for_delivery_and_shutdown_releases_everything(sqs_queue: Queue) -> None:
    before = set(threading.enumerate())
    handler = SQSForwardHandler(sqs_queue.name, sqs_queue.region, **sqs_queue.handler_kwargs)
    await handler.handle_many([("e", i) for i in range(25)])  # lazy start on the first events
    await handler.flush(20)
    assert handler.stats.delivered == 25
    assert handler.stats.queued == 0
    # After flush returned, the broker really has them (no read-after-ack race).
    await asyncio.to_thread(sqs_queue.receive, 25, 30)
    assert len(sqs_queue.received) == 25
    # The transport's boto3 thread ends with it (other tests' forwarders may still have threads of that name).
    ours = [t for t in threading.enumerate() if t.name.startswith(thread_name("sqs-transport")) and t not in before]
    assert ours
    await handler.shutdown(5)
    await asyncio.to_thread(
        wait_for, lambda: not any(t.is_alive() for t in ours), message="the transport's thread to end"
    )


@pytest.mark.anyio
async def test_a_failing_key_function_dead_letters_only_that_event(sqs_queue: Queue) -> None:
    dead: list[tuple[str, str]] = []

    def key(event: Any) -> str:
        return str(10 // event[1])  # fails for payload 0

    handler = SQSForwardHandler(
        sqs_queue.name,
        sqs_queue.region,
        key=key,
        on_dead_letter=lambda message, reason: dead.append((message.event_name, reason)),
        **sqs_queue.handler_kwargs,
    )
    await handler.handle_many([("a", 1), ("b", 0), ("c", 2)])
    await handler.flush(20)
    assert dead == [("b", "key function failed: ZeroDivisionError: integer division or modulo by zero")]
    await asyncio.to_thread(sqs_queue.receive, 2)
    await asyncio.to_thread(sqs_queue.drain_rest)
    assert sorted(r.event_name for r in sqs_queue.received) == ["a", "c"]
    await handler.shutdown(5)
