"""Server shutdown: open SSE and WebSocket streams end cleanly and uvicorn's graceful shutdown does not hang."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests._app_process import AppProcesses
from tests.stream._sse_client import SSEReader, until
from tests.stream.test_sse import post
from tests.stream.test_ws import ws_url

pytestmark = pytest.mark.anyio


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[AppProcesses]:
    processes = AppProcesses("tests.stream.apps:make_app", tmp_path)
    yield processes
    processes.close()


@pytest.mark.parametrize(("sig", "lifespan"), [(signal.SIGTERM, "on"), (signal.SIGINT, "on"), (signal.SIGTERM, "off")])
async def test_sigterm_ends_open_streams_and_uvicorn_exits(
    apps: AppProcesses, sig: signal.Signals, lifespan: str
) -> None:
    # Without lifespan the stream never gets startup(): it hooks the signals on its first subscriber instead.
    proc, base = apps.start({"UVICORN_LIFESPAN": lifespan})
    async with SSEReader(f"{base}/events") as reader, connect(ws_url(base)) as ws:
        await post(base, "before", 1)
        await reader.wait_messages(1)
        assert "before" in await asyncio.wait_for(ws.recv(), 10)
        started = time.monotonic()
        os.kill(proc.pid, sig)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        await until(lambda: reader.ended or reader.error is not None, 10, "the SSE response to end")
        exit_code = await asyncio.to_thread(proc.wait, 15)
    assert reader.ended  # a complete response, not a dropped connection
    assert reader.error is None
    assert closed.value.rcvd is not None
    # Ours (1001, going away) or uvicorn's own close of open WebSockets (1012, service restart) if it got there first.
    assert closed.value.rcvd.code in (1001, 1012)
    # uvicorn re-raises the signal once it has shut down gracefully (default action: exit by that signal).
    assert exit_code in (0, -sig, 128 + sig)
    log = next(apps.log_dir.glob("uvicorn-*.log")).read_text()
    assert "Traceback" not in log, log
    assert "ERROR" not in log, log
    assert time.monotonic() - started < 5
