"""Starting ``python -m fastapi_events consume`` subprocesses for the end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = "tests.consumer.e2e_handlers:handler"


def start_consumer(
    url: str, out: Path, log: Path, *, delay: float = 0.0, concurrency: int = 8, extra: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, E2E_OUT=str(out), E2E_DELAY=str(delay), PYTHONUNBUFFERED="1")
    with open(log, "ab") as log_file:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fastapi_events",
                "consume",
                url,
                "--handlers",
                HANDLERS,
                "--concurrency",
                str(concurrency),
                "--max-attempts",
                "3",
                "--retry-delay",
                "0.05",
                *extra,
            ],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM and wait; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(timeout)


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(10)


def wait_consuming(log: Path, count: int = 1, timeout: float = 60.0) -> None:
    """Wait until ``count`` consumers logging to ``log`` have started consuming."""
    deadline = time.monotonic() + timeout
    while log.read_text(errors="replace").count(" consuming ") < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"consumer did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)
