"""An app served by uvicorn in a subprocess (so that it can be SIGKILLed), and a look into its spool."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from fastapi_events.delivery._spool import SpoolDB
from tests._servers import free_port, tcp_connectable, wait_for

ROOT = Path(__file__).resolve().parents[1]

StartApp = Callable[[dict[str, str]], "tuple[subprocess.Popen[bytes], str]"]


def pending_count(path: Path) -> int:
    """Events waiting in the spool file at ``path`` (-1 while the file does not exist)."""
    if not path.exists():
        return -1
    db = SpoolDB(path)
    try:
        return db.count_pending()
    finally:
        db.close()


class AppProcesses:
    """Starts ``uvicorn --factory FACTORY`` processes on free ports; :meth:`close` kills what is left."""

    def __init__(self, factory: str, log_dir: Path) -> None:
        self.factory = factory
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, extra_env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        log_path = self.log_dir / f"uvicorn-{port}.log"
        command = [sys.executable, "-m", "uvicorn", "--factory", self.factory]
        command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **extra_env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        wait_for(lambda: tcp_connectable(port) or proc.poll() is not None, 30, message="uvicorn to listen")
        assert proc.poll() is None, log_path.read_text()
        return proc, f"http://127.0.0.1:{port}"

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def accept_then_sigkill(start_app: StartApp, env: dict[str, str], spool: Path, events: int = 60) -> None:
    """Start the app, post ``events`` events (6 per request), wait until all are in the spool, SIGKILL it."""
    app, url = start_app(env)
    with httpx.Client(base_url=url, timeout=10) as client:
        for first in range(0, events, 6):
            response = client.post("/events/order.placed", json=list(range(first, min(first + 6, events))))
            assert response.status_code == 200
    # Accepted = durably in the spool (the handler runs after the response is sent).
    wait_for(lambda: pending_count(spool) == events, 15, message=f"{events} events in the spool")
    os.killpg(app.pid, signal.SIGKILL)
    app.wait(10)
    assert pending_count(spool) == events
