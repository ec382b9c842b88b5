"""The emulator is killed mid-stream and restarted on the same port: no event is lost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from fastapi_events.handlers.gcp import GoogleCloudSimplePubSubHandler
from tests._servers import PubSubEmulator, wait_for

from .conftest import Consumer, GatedRelay

pytestmark = [pytest.mark.anyio, pytest.mark.servers]


async def test_emulator_killed_and_restarted_mid_stream_loses_nothing(
    fresh_pubsub_emulator: Callable[..., PubSubEmulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = fresh_pubsub_emulator()
    # The test's own clients talk to the emulator directly ...
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
    consumer = Consumer(emulator)
    consumer.create()
    consumer.start()
    relay = GatedRelay(emulator.port)
    # ... the forwarder through the relay (its client reads the variable when it is built, at startup).
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", relay.host)
    # The in-memory queue must hold what is produced while the emulator is down and restarting (a JVM).
    handler = GoogleCloudSimplePubSubHandler(emulator.project, consumer.topic_id, max_queue_size=100_000)
    await handler.startup()

    produced: list[int] = []
    phase = {"name": "before"}
    during_outage: list[int] = []

    async def produce() -> None:
        # 20 events per "request", a request every 20 ms (~1000 events/s), until told to stop.
        n = 0
        while phase["name"] != "stop":
            batch = list(range(n, n + 20))
            await handler.handle_many([("tick", {"i": i}) for i in batch])
            produced.extend(batch)
            if phase["name"] == "outage":
                during_outage.extend(batch)
            n += 20
            await anyio.sleep(0.02)

    def wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        return anyio.to_thread.run_sync(lambda: wait_for(predicate, timeout=timeout, message=what))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            await wait(lambda: handler.stats.delivered >= 500, 30, "500 delivered before the outage")

            # Cut the forwarder off, let the consumer pull everything the emulator acknowledged (the emulator
            # forgets undelivered messages when it dies, which is not the forwarder's loss), then kill it.
            relay.close_gate()
            await anyio.sleep(0.3)  # in-flight publish requests end one way or the other
            delivered_before = handler.stats.delivered
            await wait(lambda: len(consumer.event_ids()) >= delivered_before, 30, "consumer caught up")
            phase["name"] = "outage"
            emulator.kill()
            assert not emulator.is_running
            relay.open_gate()  # the forwarder now sees the dead port itself: connection refused
            await anyio.sleep(2.0)
            assert handler.stats.delivered == delivered_before, "nothing can be delivered while down"

            relay.close_gate()
            emulator.restart()
            # The emulator lost topic and subscription: recreate both before the forwarder may publish again.
            await anyio.to_thread.run_sync(consumer.create)
            phase["name"] = "after"
            relay.open_gate()

            await wait(lambda: handler.stats.delivered > delivered_before, 60, "deliveries resumed")
            await anyio.sleep(0.5)
            phase["name"] = "stop"

        await handler.flush(60)
        await wait(lambda: len(consumer.event_ids()) >= len(produced), 60, "every produced event")
    finally:
        phase["name"] = "stop"
        await handler.shutdown(timeout=10)
        consumer.close()
        relay.close()

    received = {m.body[1]["i"] for m in consumer.received()}
    assert during_outage, "the producer kept dispatching during the outage"
    assert set(during_outage) <= received
    assert received == set(produced)
    assert handler.stats.dead_lettered == 0
    assert handler.stats.dropped == 0
    print(
        f"\nproduced {len(produced)}, {len(during_outage)} while the emulator was down; "
        f"received {len(consumer.received())} messages ({len(received)} distinct); {handler.stats}"
    )


async def _ordered_run_with_outage(emulator: PubSubEmulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """200 events on each of 3 keys; the network to the emulator is cut while the second half is dispatched."""
    consumer = Consumer(emulator, ordered=True)
    consumer.create()
    consumer.start()
    relay = GatedRelay(emulator.port)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", relay.host)
    handler = GoogleCloudSimplePubSubHandler(
        emulator.project, consumer.topic_id, ordering_key=lambda event: event[1]["key"]
    )
    keys = ["a", "b", "c"]
    try:
        await handler.startup()
        for seq in range(0, 100, 10):
            await handler.handle_many([("step", {"key": k, "seq": s}) for s in range(seq, seq + 10) for k in keys])
        await handler.flush(30)
        relay.close_gate()
        for seq in range(100, 200, 10):
            await handler.handle_many([("step", {"key": k, "seq": s}) for s in range(seq, seq + 10) for k in keys])
            await anyio.sleep(0.05)
        assert handler.stats.delivered == 300
        relay.open_gate()
        await handler.flush(60)
        await anyio.to_thread.run_sync(lambda: consumer.wait_for_count(600, 30))
    finally:
        await handler.shutdown(timeout=10)
        consumer.close()
        relay.close()

    assert handler.stats.dead_lettered == 0
    sequences: dict[str, list[int]] = {k: [] for k in keys}
    for message in consumer.received():
        sequences[message.ordering_key].append(message.body[1]["seq"])
    # Redelivery may repeat a message: keep first occurrences.
    return {key: list(dict.fromkeys(seqs)) for key, seqs in sequences.items()}


async def test_ordered_publishing_survives_a_network_outage_in_order(
    pubsub_env: PubSubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed ordered publish pauses its key in the client; the forwarder resumes the key, delivers everything
    and keeps each key's order (an outage is reported by raising, so the layer resends whole rounds in order)."""
    sequences = await _ordered_run_with_outage(pubsub_env, monkeypatch)
    for key, seqs in sequences.items():
        assert seqs == list(range(200)), key
