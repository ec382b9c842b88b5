"""Measure event-loop stalls while code under test runs: a ticker that should wake every millisecond."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

# The reason tests measuring stalls are marked ``serial``: beside parallel test workers on a shared CPU, the OS
# deschedules the loop for longer than a stall, whatever the code under test does.
LOOP_TIMING = "measures event-loop stalls of 20 ms: parallel test workers on a shared CPU cause them too"


@asynccontextmanager
async def loop_lag() -> AsyncIterator[list[float]]:
    """Yield the list of lags (seconds each 1 ms tick overshot), filled while the block runs."""
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - before - 0.001)

    task = asyncio.create_task(ticker())
    try:
        yield lags
    finally:
        stop.set()
        await task


def stalls(lags: list[float], over: float = 0.02) -> list[float]:
    return [lag for lag in lags if lag > over]
