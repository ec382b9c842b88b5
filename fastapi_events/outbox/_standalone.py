"""A relay on its own: ``python -m fastapi_events relay DATABASE_URL --handlers module:attribute``.

It runs the same handlers an app's middleware would (their startup, flush and shutdown included) and delivers
whatever any app committed and did not finish, until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from typing import Any

from .._runtime import Runtime
from ._outbox import SQLAlchemyOutbox

logger = logging.getLogger("fastapi_events.outbox")


def flatten_handlers(targets: Sequence[Any]) -> list[Any]:
    """``--handlers`` may name a handler or a list/tuple of them (the list the middleware gets)."""
    handlers: list[Any] = []
    for target in targets:
        if isinstance(target, (list, tuple)):
            handlers.extend(target)
        else:
            handlers.append(target)
    return handlers


async def serve(outbox: SQLAlchemyOutbox, handlers: Sequence[Any], stop: asyncio.Event | None = None) -> None:
    """Relay until ``stop`` is set (by default: until SIGTERM or SIGINT)."""
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    outbox.relay = True
    runtime = Runtime(handlers, id(outbox), outbox=outbox)
    try:
        await runtime.startup()
        logger.info("outbox relay on %r started for %d handler(s)", outbox, len(runtime.handlers))
        await stop.wait()
        logger.info("outbox relay stopping")
    finally:
        await runtime.shutdown(10.0)


__all__ = ["flatten_handlers", "serve"]
