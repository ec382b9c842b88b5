"""The handler the standalone relays of ``bench_delayed.py`` run (``--handlers _delayed_handlers:seen``)."""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi_events import EventMeta, event_meta
from fastapi_events.handlers.local import Depends, LocalHandler

seen = LocalHandler()
# Opened once, line-buffered: a write per event is a buffer copy, not a blocking call worth a thread.
_out = open(os.environ["BENCH_OUT"], "a", buffering=1) if "BENCH_OUT" in os.environ else None  # noqa: SIM115


@seen.register(event_name="*")
async def record(event: Any, meta: EventMeta = Depends(event_meta)) -> None:
    now = time.time()
    if _out is not None:
        _out.write(f"{meta.id} {event[1]['due']!r} {now!r} {os.getpid()}\n")
