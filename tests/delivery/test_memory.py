"""Without a spool: a bounded in-memory queue whose overflow is loud and counted, never silent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from fastapi_events.handlers.aws import SQSForwardHandler
from tests._servers import MotoServer, free_port
from tests._sqs import Queue


@pytest.mark.anyio
async def test_overflow_is_logged_at_error_with_event_names_and_counted(
    dead_endpoint: Callable[[], dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    handler = SQSForwardHandler("q", "us-east-1", max_queue_size=5, **dead_endpoint())
    with caplog.at_level(logging.ERROR, logger="fastapi_events"):
        await handler.handle_many([(f"kept.{i}", i) for i in range(4)])
        await handler.handle_many([("kept.4", 4), ("lost.a", 5), ("lost.b", 6)])
    stats = handler.stats
    assert (stats.accepted, stats.queued, stats.dropped) == (7, 5, 2)
    dropped_logs = [r for r in caplog.records if "DROPPED" in r.getMessage()]
    assert [r.levelno for r in dropped_logs] == [logging.ERROR, logging.ERROR]
    assert [getattr(r, "event_name", None) for r in dropped_logs] == ["lost.a", "lost.b"]
    assert "'lost.a'" in dropped_logs[0].getMessage()

    # At shutdown with the broker still down, what is left in memory is reported as lost, by name.
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="fastapi_events"):
        await handler.shutdown(0.2)
    lost = [r for r in caplog.records if "LOST at shutdown" in r.getMessage()]
    assert sorted(getattr(r, "event_name", "") for r in lost) == [f"kept.{i}" for i in range(5)]
    assert handler.stats.dropped == 7


@pytest.mark.anyio
async def test_events_wait_in_memory_until_the_broker_comes_up(
    fresh_moto_server: Callable[..., MotoServer],
) -> None:
    # The broker is not running yet when the events arrive: opening the queue is retried in the background and
    # the events wait in memory; once the server (and the queue) exist, all of them are delivered.
    port = free_port()
    kwargs = {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    handler = SQSForwardHandler("late-queue", "us-east-1", reconnect_max_delay=0.2, **kwargs)
    await handler.handle_many([("e", i) for i in range(12)])
    await asyncio.sleep(0.5)
    assert handler.stats.delivered == 0
    assert handler.stats.queued == 12
    server = await asyncio.to_thread(fresh_moto_server, port=port)
    queue = await asyncio.to_thread(Queue, dict(server.client_kwargs), "late-queue")
    await handler.flush(30)
    assert handler.stats.delivered == 12
    await asyncio.to_thread(queue.receive, 12)
    assert sorted(queue.payloads()) == list(range(12))
    await handler.shutdown(1)
