"""An app process killed with SIGKILL while the broker is down loses nothing that it accepted."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from fastapi_events.delivery import SpoolDB
from tests._servers import MotoServer, free_port, tcp_connectable, wait_for
from tests._sqs import Queue

ROOT = Path(__file__).resolve().parents[2]


def _pending(path: Path) -> int:
    if not path.exists():
        return -1
    db = SpoolDB(path)
    try:
        return db.count_pending()
    finally:
        db.close()


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], tuple[subprocess.Popen[bytes], str]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(extra_env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        log = open(tmp_path / f"uvicorn-{port}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "tests.delivery._app:app_from_env",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env={**os.environ, **extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(proc)
        wait_for(lambda: tcp_connectable(port) or proc.poll() is not None, 30, message="uvicorn to listen")
        assert proc.poll() is None, (tmp_path / f"uvicorn-{port}.log").read_text()
        return proc, f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_sigkill_while_broker_down_then_restart_delivers_every_accepted_event(
    tmp_path: Path,
    fresh_moto_server: Callable[..., MotoServer],
    start_app: Callable[[dict[str, str]], tuple[subprocess.Popen[bytes], str]],
) -> None:
    broker_port = free_port()  # nothing listens here yet: the broker is down
    spool = tmp_path / "spool" / "events.db"
    env = {
        "FE_QUEUE": "orders",
        "FE_SPOOL": str(spool),
        "FE_ENDPOINT": f"http://127.0.0.1:{broker_port}",
    }
    app, url = start_app(env)
    with httpx.Client(base_url=url, timeout=10) as client:
        for first in range(0, 60, 6):
            response = client.post("/events/order.placed", json=list(range(first, first + 6)))
            assert response.status_code == 200
    # Accepted = durably in the spool (the handler runs after the response is sent).
    wait_for(lambda: _pending(spool) == 60, 15, message="60 events in the spool")
    os.killpg(app.pid, signal.SIGKILL)
    app.wait(10)
    assert _pending(spool) == 60

    server = fresh_moto_server(port=broker_port)
    queue = Queue(dict(server.client_kwargs), name="orders")
    start_app(env)  # same spool_path: delivers what the killed process left, without any new request
    queue.receive(60, timeout=60)
    queue.drain_rest()
    assert sorted(queue.payloads()) == list(range(60))
    wait_for(lambda: _pending(spool) == 0, 15, message="spool emptied after delivery")
