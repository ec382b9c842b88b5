"""Every forwarder survives its real server being killed and restarted, several times, mid-stream.

Requests keep dispatching through the app while the server is down; nothing is dead-lettered or dropped, the
held events leave within 5 s of the server (and its queue / topic / stream) being back, the log says what is
going on at least every ``outage_log_interval`` seconds, and a real consumer counts every event at the end.

moto_server, the Pub/Sub emulator and tansu keep their data in memory: what they had accepted is gone after a
kill, which is the server's loss, not the forwarder's. Before killing one of those, the test lets the consumer
take everything delivered so far (requests return once their events are delivered); Redis runs with an
append-only file, so for it the kill really lands in the middle of the stream.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
import redis

from fastapi_events.delivery import ForwardHandler
from tests._servers import KafkaBroker, MotoServer, PubSubEmulator, RedisServer, wait_for
from tests._sqs import Queue
from tests.delivery._app import make_app

pytestmark = [pytest.mark.anyio, pytest.mark.servers]

CYCLES = 3
PER_REQUEST = 20
LOG_INTERVAL = 0.5
RECOVERY_BOUND = 5.0  # seconds from the server being usable again to every held event delivered


@dataclass
class Rig:
    """One broker under test: its forwarder, how to kill and bring back its server, what a consumer saw."""

    forwarder: ForwardHandler
    kill: Callable[[], None]
    restart: Callable[[], None]  # returns once the server and its destination are usable again
    received: Callable[[int], set[int]]  # payloads a real consumer got so far, of the given number produced
    forgets_on_kill: bool
    cleanup: list[Callable[[], None]] = field(default_factory=list)


def _sqs_rig(factory: Callable[..., MotoServer]) -> Rig:
    server = factory()
    queue = Queue(dict(server.client_kwargs))
    from fastapi_events.handlers.aws import SQSForwardHandler

    forwarder = SQSForwardHandler(queue.name, queue.region, outage_log_interval=LOG_INTERVAL, **queue.handler_kwargs)

    def received(produced: int) -> set[int]:
        queue.drain_rest(settle=0.2)
        return {int(p) for p in queue.payloads()}

    def restart() -> None:
        server.restart()
        queue.create()  # moto forgot the queue: until it exists again, sends fail with QueueDoesNotExist

    return Rig(forwarder, server.kill, restart, received, forgets_on_kill=True)


def _pubsub_rig(factory: Callable[..., PubSubEmulator], monkeypatch: pytest.MonkeyPatch) -> Rig:
    from fastapi_events.handlers.gcp import GoogleCloudSimplePubSubHandler
    from tests.brokers.pubsub.conftest import Consumer, GatedRelay

    emulator = factory()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)  # the consumer's clients: the emulator itself
    consumer = Consumer(emulator)
    consumer.create()
    consumer.start()
    relay = GatedRelay(emulator.port)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", relay.host)  # the forwarder's client (built at its first send)
    forwarder = GoogleCloudSimplePubSubHandler(emulator.project, consumer.topic_id, outage_log_interval=LOG_INTERVAL)

    def restart() -> None:
        emulator.restart()
        # Back without its topic, as after a redeploy: the forwarder gets NOT_FOUND for a moment ...
        time.sleep(1.5)
        # ... then topic and subscription are created again. The gate keeps the forwarder out while only the
        # topic exists: the emulator would drop messages published to a topic without subscription.
        relay.close_gate()
        consumer.create()
        relay.open_gate()

    def received(produced: int) -> set[int]:
        return {int(m.body[1]) for m in consumer.received()}

    return Rig(forwarder, emulator.kill, restart, received, True, [consumer.close, relay.close])


def _kafka_rig(factory: Callable[..., KafkaBroker]) -> Rig:
    from fastapi_events.codec import decode_event
    from fastapi_events.handlers.kafka import KafkaForwardHandler
    from tests.brokers.kafka.test_forwarder import read_all

    broker = factory()
    topic = f"outage-{uuid.uuid4().hex[:8]}"
    forwarder = KafkaForwardHandler(topic, broker.bootstrap_servers, outage_log_interval=LOG_INTERVAL)
    seen: set[int] = set()  # tansu starts empty after a restart: what was read before the kill is kept here
    latest: set[int] = set()

    def received(produced: int) -> set[int]:
        # A fresh reader from the beginning of the topic each time (few hundred events).
        messages = read_all(broker.bootstrap_servers, topic, produced - len(seen), timeout=20)
        latest.clear()
        latest.update(seen | {int(decode_event(m.value())[1]) for m in messages})
        return set(latest)

    def kill() -> None:
        seen.update(latest)  # the test waited for the reader to have everything delivered so far
        broker.kill()

    return Rig(forwarder, kill, broker.restart, received, forgets_on_kill=True)


def _redis_rig(factory: Callable[..., RedisServer]) -> Rig:
    from fastapi_events.codec import decode_event
    from fastapi_events.handlers.redis import RedisStreamForwardHandler

    server = factory(appendonly=True)
    stream = f"outage-{uuid.uuid4().hex[:8]}"
    forwarder = RedisStreamForwardHandler(stream, server.url, outage_log_interval=LOG_INTERVAL)

    def received(produced: int) -> set[int]:
        client = redis.Redis.from_url(server.url)
        try:
            return {int(decode_event(fields[b"body"])[1]) for _, fields in client.xrange(stream)}
        finally:
            client.close()

    return Rig(forwarder, server.kill, server.restart, received, forgets_on_kill=False)


@pytest.fixture(params=["sqs", "pubsub", "kafka", "redis"])
def rig(
    request: pytest.FixtureRequest,
    fresh_moto_server: Callable[..., MotoServer],
    fresh_pubsub_emulator: Callable[..., PubSubEmulator],
    fresh_kafka_broker: Callable[..., KafkaBroker],
    fresh_redis_server: Callable[..., RedisServer],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Rig]:
    builders: dict[str, Callable[[], Rig]] = {
        "sqs": lambda: _sqs_rig(fresh_moto_server),
        "pubsub": lambda: _pubsub_rig(fresh_pubsub_emulator, monkeypatch),
        "kafka": lambda: _kafka_rig(fresh_kafka_broker),
        "redis": lambda: _redis_rig(fresh_redis_server),
    }
    built = builders[request.param]()
    yield built
    for step in built.cleanup:
        step()


def _outage_warnings(caplog: pytest.LogCaptureFixture, since: float, until: float) -> int:
    return sum(
        1
        for r in caplog.records
        if r.name == "fastapi_events.delivery"
        and r.levelno >= logging.WARNING
        and since <= r.created <= until
        and ("cannot reach" in r.getMessage() or "cannot open" in r.getMessage() or "no answer" in r.getMessage())
    )


async def test_server_killed_and_restarted_mid_stream_loses_nothing(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "fastapi_events")
    forwarder = rig.forwarder
    produced: list[int] = []
    recoveries: list[float] = []
    app = make_app(forwarder)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:

        async def request() -> float:
            start = len(produced)
            batch = list(range(start, start + PER_REQUEST))
            produced.extend(batch)
            began = time.monotonic()
            response = await client.post("/events/tick", json=batch)
            assert response.status_code == 200
            return time.monotonic() - began

        async def blocking(func: Callable[[], Any]) -> Any:
            return await anyio.to_thread.run_sync(func)

        try:
            for _ in range(CYCLES):
                for _ in range(5):
                    await request()
                assert forwarder.stats.queued == 0  # each request returned once its events were delivered
                if rig.forgets_on_kill:
                    await blocking(
                        lambda: wait_for(
                            lambda: rig.received(len(produced)) >= set(produced), timeout=30, message="caught up"
                        )
                    )
                held_before = len(produced)
                killed_at = time.time()
                await blocking(rig.kill)
                # The stream goes on while the server is down; requests are not held for the outage's length.
                durations = []
                for _ in range(6):
                    durations.append(await request())
                    await anyio.sleep(0.25)
                assert max(durations[1:]) < 2.0, durations
                assert forwarder.stats.queued >= len(produced) - held_before
                await blocking(rig.restart)
                back_at = time.monotonic()
                await blocking(
                    lambda: wait_for(lambda: forwarder.stats.queued == 0, timeout=60, message="held events delivered")
                )
                recoveries.append(time.monotonic() - back_at)
                # Never quiet: the first failure at once, then every LOG_INTERVAL while it lasts.
                assert _outage_warnings(caplog, killed_at, time.time()) >= 2
            await blocking(
                lambda: wait_for(
                    lambda: rig.received(len(produced)) == set(produced), timeout=60, message="every event consumed"
                )
            )
        finally:
            await forwarder.shutdown(10)

    stats = forwarder.stats
    assert (stats.dead_lettered, stats.dropped) == (0, 0)
    assert stats.delivered >= len(produced)
    assert max(recoveries) < RECOVERY_BOUND, recoveries
    print(f"recovery after restart (s): {[round(r, 2) for r in recoveries]}")
