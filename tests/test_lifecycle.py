"""Lifecycle under a real server: uvicorn in a subprocess, stopped with SIGTERM like a deployment does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests._servers import free_port, wait_for

pytestmark = pytest.mark.fastapi  # the apps under test are FastAPI apps

APP = """
import asyncio, os
from fastapi import FastAPI
from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware

OUT = os.environ["EVENTS_OUT"]
SLEEP = float(os.environ.get("HANDLER_SLEEP", "0.3"))
handler = LocalHandler()

@handler.register(event_name="*")
async def slow(event):
    await asyncio.sleep(SLEEP)
    with open(OUT, "a") as f:
        f.write(f"{event[0]}\\n")

app = FastAPI()
app.add_middleware(EventHandlerASGIMiddleware, handlers=[handler], middleware_id=1,
                   shutdown_timeout=float(os.environ.get("SHUTDOWN_TIMEOUT", "10")))

@app.get("/")
async def index():
    dispatch("from-request")
    # Fire-and-forget work outside the request, as a startup task or a chained event would be.
    asyncio.get_running_loop().call_later(0.05, lambda: dispatch("outside-request", middleware_id=1))
    return {"ok": True}
"""


def start_server(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    (tmp_path / "lifecycle_app.py").write_text(textwrap.dedent(APP))
    out = tmp_path / "events.txt"
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "lifecycle_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *args,
        ],
        cwd=tmp_path,
        env={**os.environ, "EVENTS_OUT": str(out), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/docs", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=20, message="uvicorn did not start")
    return proc, port, out


def test_sigterm_waits_for_in_flight_and_out_of_request_events(tmp_path) -> None:
    proc, port, out = start_server(tmp_path)
    try:
        for _ in range(5):
            assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
        time.sleep(0.1)  # let the out-of-request dispatches happen; their handlers still sleep
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal it captured once its graceful shutdown is complete.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = out.read_text().splitlines()
    assert sorted(lines) == ["from-request"] * 5 + ["outside-request"] * 5


def test_shutdown_is_bounded_and_says_what_it_left(tmp_path) -> None:
    # A request's events are handled inside its ASGI call, so the server's graceful-shutdown timeout bounds them;
    # work outside requests is bounded by the middleware's shutdown_timeout.
    proc, port, out = start_server(
        tmp_path, "--timeout-graceful-shutdown", "1", HANDLER_SLEEP="60", SHUTDOWN_TIMEOUT="1"
    )
    # The request's own handler runs inside the ASGI call after the response was sent.
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    time.sleep(0.2)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - started < 15
    assert b"shutdown timed out" in output
    assert b"cancelled while handling 1 event(s) ['from-request']" in output
    assert not out.exists() or "outside-request" not in out.read_text()


@pytest.mark.anyio
async def test_drain_waits_for_everything_dispatched_so_far() -> None:
    import asyncio

    from fastapi import FastAPI

    from fastapi_events import drain
    from fastapi_events.dispatcher import dispatch
    from fastapi_events.handlers.local import LocalHandler
    from fastapi_events.middleware import EventHandlerASGIMiddleware

    handler = LocalHandler()
    done: list[int] = []

    @handler.register(event_name="*")
    async def slow(event) -> None:
        await asyncio.sleep(0.05)
        done.append(event[1])

    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[handler], middleware_id=31337)

    @app.get("/")
    async def index() -> dict[str, str]:
        return {}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        await client.get("/")
    for i in range(20):
        dispatch("bg", i, middleware_id=31337)
    assert done == []
    assert await drain(5) is True
    assert done == list(range(20))
