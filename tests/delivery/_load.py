"""Overloading a forwarder through a real uvicorn server: clients posting numbered events as fast as they can,
and a sampler of what the forwarder holds in memory meanwhile."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import dataclass

import httpx

from fastapi_events.delivery import ForwardHandler

EVENTS_PER_REQUEST = 10
CLIENTS = 20
# uvicorn starts a keep-alive connection's next request while the previous ASGI call still hands its events
# over, so the calls in progress - and the events they hold - are bounded by --limit-concurrency.
LIMIT_CONCURRENCY = 40


# How long ``drive(..., at_least=N)`` may go on past its seconds before it gives up on N.
AT_LEAST_CAP = 60.0


async def drive(
    url: str, seconds: float, *, clients: int = CLIENTS, name: str = "load.tick", at_least: int = 0
) -> list[int]:
    """Post ``EVENTS_PER_REQUEST`` numbered events per request from ``clients`` connections for ``seconds``
    (and on, up to ``AT_LEAST_CAP`` s more, until ``at_least`` were sent: on a busy machine the clients may not
    get through that many in time); returns the numbers of the events whose request succeeded (503s from
    --limit-concurrency are retried)."""
    numbers = itertools.count()
    sent: list[int] = []
    started = time.monotonic()
    deadline, cap = started + seconds, started + seconds + AT_LEAST_CAP

    def going() -> bool:
        now = time.monotonic()
        return now < deadline or (len(sent) < at_least and now < cap)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            while going():
                batch = [next(numbers) for _ in range(EVENTS_PER_REQUEST)]
                while True:
                    response = await http.post(f"/events/{name}", json=batch)
                    if response.status_code != 503:
                        break
                    await asyncio.sleep(0.01)
                assert response.status_code == 200, response.text
                sent.extend(batch)

    await asyncio.gather(*(client() for _ in range(clients)))
    return sent


@dataclass
class Peaks:
    queued: int = 0  # in the forwarder's in-memory queue
    waiting: int = 0  # in requests waiting for room (backpressure)
    held: int = 0  # both at once


class Sampler:
    """Samples ``handler.stats`` from a thread every few milliseconds (the server runs on its own loop)."""

    def __init__(self, handler: ForwardHandler) -> None:
        self.handler = handler
        self.peaks = Peaks()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            stats = self.handler.stats
            peaks = self.peaks
            peaks.queued = max(peaks.queued, stats.queued)
            peaks.waiting = max(peaks.waiting, stats.waiting)
            peaks.held = max(peaks.held, stats.queued + stats.waiting)

    def __enter__(self) -> Peaks:
        self._thread.start()
        return self.peaks

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)
