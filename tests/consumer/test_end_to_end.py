"""Web app -> broker -> two ``python -m fastapi_events consume`` processes -> handlers.

Every event is handled at least once although one consumer is SIGKILLed mid-stream and restarted, and both
exit with code 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.base import BaseEventHandler
from fastapi_events.handlers.kafka import KafkaForwardHandler
from fastapi_events.handlers.redis import RedisStreamForwardHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware

from ._processes import kill, start_consumer, stop, wait_consuming
from .e2e_handlers import read_done

pytestmark = [pytest.mark.anyio, pytest.mark.servers]

EVENTS = 1500


def make_app(forwarder: BaseEventHandler) -> FastAPI:
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[forwarder])

    @app.post("/items/{n}")
    async def create_item(n: int) -> dict[str, int]:
        dispatch("item.created", {"n": n})
        return {"n": n}

    return app


async def wait_until(predicate: Any, timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{tails(logs)}")
        await asyncio.sleep(0.1)


def tails(logs: list[Path]) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}" for log in logs if log.exists())


async def run_end_to_end(forwarder: Any, url: str, tmp_path: Path) -> None:
    out = tmp_path / "handled.txt"
    logs = [tmp_path / "consumer-a.log", tmp_path / "consumer-b.log"]
    consumers = [start_consumer(url, out, log, delay=0.002) for log in logs]
    app = make_app(forwarder)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
            for n in range(EVENTS // 2):
                assert (await client.post(f"/items/{n}")).status_code == 200
            await wait_until(lambda: len(read_done(str(out))) >= 100, 60, "the consumers to get going", logs)
            os.kill(consumers[0].pid, signal.SIGKILL)  # mid-stream, with messages in flight
            consumers[0].wait(10)
            for n in range(EVENTS // 2, EVENTS):
                assert (await client.post(f"/items/{n}")).status_code == 200
            consumers[0] = start_consumer(url, out, logs[0], delay=0.002)
            await asyncio.to_thread(wait_consuming, logs[0], 2)
        await forwarder.flush(60)
        assert forwarder.stats.delivered == EVENTS

        def all_handled() -> bool:
            return set(read_done(str(out))) == set(range(EVENTS))

        await wait_until(all_handled, 120, "every event to be handled", logs)
        try:
            codes = [stop(process) for process in consumers]
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"a consumer did not exit after SIGTERM\n{tails(logs)}") from exc
    finally:
        for process in consumers:
            kill(process)
        await forwarder.shutdown()
    assert codes == [0, 0], tails(logs)
    done = read_done(str(out))
    assert set(done) == set(range(EVENTS))
    pids = {line.split()[1] for line in out.read_text().splitlines()}
    assert len(pids) >= 2  # the work was shared


async def test_kafka_end_to_end_survives_a_killed_consumer(kafka_broker: Any, tmp_path: Path) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    forwarder = KafkaForwardHandler(
        topic, kafka_broker.bootstrap_servers, key=lambda event: str(event[1]["n"] % 16), spool_path=tmp_path / "s.db"
    )
    url = (
        f"kafka://{kafka_broker.bootstrap_servers}/{topic}?group=e2e&session.timeout.ms=6000&heartbeat.interval.ms=500"
    )
    await run_end_to_end(forwarder, url, tmp_path)


async def test_redis_end_to_end_survives_a_killed_consumer(redis_server: Any, tmp_path: Path) -> None:
    stream = f"e2e-{uuid.uuid4().hex[:8]}"
    forwarder = RedisStreamForwardHandler(stream, redis_server.url, spool_path=tmp_path / "s.db")
    base = redis_server.url.rsplit("/", 1)[0]
    await run_end_to_end(forwarder, f"{base}/0/{stream}?group=e2e&claim_idle=2", tmp_path)
