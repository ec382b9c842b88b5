"""An app process killed with SIGKILL while the broker is down loses nothing that it accepted."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests._app_process import AppProcesses, StartApp, accept_then_sigkill, pending_count
from tests._servers import MotoServer, free_port, wait_for
from tests._sqs import Queue


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[StartApp]:
    processes = AppProcesses("tests.delivery._app:app_from_env", tmp_path)
    yield processes.start
    processes.close()


def test_sigkill_while_broker_down_then_restart_delivers_every_accepted_event(
    tmp_path: Path,
    fresh_moto_server: Callable[..., MotoServer],
    start_app: StartApp,
) -> None:
    broker_port = free_port()  # nothing listens here yet: the broker is down
    spool = tmp_path / "spool" / "events.db"
    env = {
        "FE_QUEUE": "orders",
        "FE_SPOOL": str(spool),
        "FE_ENDPOINT": f"http://127.0.0.1:{broker_port}",
    }
    accept_then_sigkill(start_app, env, spool)

    server = fresh_moto_server(port=broker_port)
    queue = Queue(dict(server.client_kwargs), name="orders")
    start_app(env)  # same spool_path: delivers what the killed process left, without any new request
    queue.receive(60, timeout=60)
    queue.drain_rest()
    assert sorted(queue.payloads()) == list(range(60))
    wait_for(lambda: pending_count(spool) == 0, 15, message="spool emptied after delivery")
