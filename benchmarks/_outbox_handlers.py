"""Handlers the standalone relays of ``bench_outbox.py`` and ``bench_delayed.py`` run (``--handlers
_outbox_handlers:forward``)."""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi_events import EventMeta, event_meta
from fastapi_events.handlers.local import Depends, LocalHandler
from fastapi_events.handlers.redis import RedisStreamForwardHandler

forward = [RedisStreamForwardHandler(os.environ.get("BENCH_STREAM", "bench"), os.environ.get("BENCH_REDIS", ""))]

latency = LocalHandler()
# Opened once, line-buffered: a write per event is a buffer copy, not a blocking call worth a thread.
_out = open(os.environ["BENCH_OUT"], "a", buffering=1) if "BENCH_OUT" in os.environ else None  # noqa: SIM115


@latency.register(event_name="*")
async def seen(event: Any, meta: EventMeta = Depends(event_meta)) -> None:
    now = time.time()
    if _out is not None:
        _out.write(f"{meta.id} {now!r}\n")


delayed = LocalHandler()  # bench_delayed.py: the due time travels in the payload


@delayed.register(event_name="*")
async def due(event: Any, meta: EventMeta = Depends(event_meta)) -> None:
    now = time.time()
    if _out is not None:
        _out.write(f"{meta.id} {event[1]['due']!r} {now!r} {os.getpid()}\n")
