"""Running a consumer as the main thing a process does: signals in, exit code out.

SIGTERM/SIGINT ask for a graceful stop (finish what is running, commit, exit 0); a second one cancels the
handlers still running, for operators who cannot wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from ..handlers.local import LocalHandler
from ._runner import Consumer, ConsumerStats
from ._source import Source, source_from_url

logger = logging.getLogger("fastapi_events.consumer")


async def consume(source: Source | str, handler: LocalHandler, **options: Any) -> ConsumerStats:
    """Consume ``source`` (a :class:`Source` or a consumer URL) until SIGTERM/SIGINT (see ``Consumer``)."""
    if isinstance(source, str):
        source = source_from_url(source)
    consumer = Consumer(source, handler, **options)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)

    def on_signal(signum: int) -> None:
        if consumer.stopping:
            logger.warning("second %s: cancelling running handlers", signal.Signals(signum).name)
            consumer.abort()
            return
        logger.info("%s: finishing in-flight messages, then exiting", signal.Signals(signum).name)
        consumer.stop()

    installed = []
    for signum in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not main thread / Windows
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
    try:
        return await consumer.run()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def run_consumer(source: Source | str, handler: LocalHandler, **options: Any) -> int:
    """Blocking :func:`consume` for a process's main function; returns the exit code (0: graceful stop)."""
    asyncio.run(consume(source, handler, **options))
    return 0


__all__ = ["consume", "run_consumer"]
