"""SIGKILL of an app process while Pub/Sub is down: the next process with the same spool delivers everything."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests._app_process import AppProcesses, StartApp, accept_then_sigkill, pending_count
from tests._servers import PubSubEmulator, free_port, wait_for

from .conftest import Consumer


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[StartApp]:
    processes = AppProcesses("tests.brokers.pubsub._app:app_from_env", tmp_path)
    yield processes.start
    processes.close()


@pytest.mark.servers
def test_sigkill_while_pubsub_down_then_restart_delivers_every_accepted_event(
    tmp_path: Path,
    fresh_pubsub_emulator: Callable[..., PubSubEmulator],
    start_app: StartApp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulator_port = free_port()  # nothing listens here yet: Pub/Sub is down
    spool = tmp_path / "spool" / "events.db"
    env = {
        "FE_PROJECT": PubSubEmulator.project,
        "FE_TOPIC": "orders",
        "FE_SPOOL": str(spool),
        "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{emulator_port}",
    }
    accept_then_sigkill(start_app, env, spool)

    emulator = fresh_pubsub_emulator(port=emulator_port)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
    consumer = Consumer(emulator, topic_id="orders")
    try:
        consumer.create()
        consumer.start()
        start_app(env)  # same spool_path: delivers what the killed process left, without any new request
        consumer.wait_for_count(60, timeout=60)
        wait_for(lambda: pending_count(spool) == 0, 15, message="spool emptied after delivery")
    finally:
        consumer.close()
    assert sorted(m.body[1] for m in consumer.received()) == list(range(60))
    assert {m.attributes["event_name"] for m in consumer.received()} == {"order.placed"}
