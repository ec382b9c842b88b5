"""Ending open streams when the server is asked to stop.

Servers wait for open requests before their lifespan shutdown runs, and an event stream never ends by itself:
uvicorn's graceful shutdown would wait forever. Servers learn about the stop from SIGTERM/SIGINT, so the stream
chains itself in front of whatever handler the server installed (uvicorn installs its own with
``signal.signal``), closes its subscriptions, and calls that handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ShutdownSignals:
    def __init__(self, on_signal: Callable[[], None]) -> None:
        self.on_signal = on_signal
        self._previous: dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._installed = False

    def install(self) -> None:
        """Chain in front of the current handlers; only possible (and needed) in the main thread."""
        if self._installed or threading.current_thread() is not threading.main_thread():
            return
        self._installed = True
        self._loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue  # default action or ignored: the process ends (or not) without a graceful phase
            self._previous[sig] = previous
            signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._handle:
                signal.signal(sig, previous)
        self._previous.clear()
        self._installed = False

    def _handle(self, sig: int, frame: FrameType | None) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(self.on_signal)
        previous = self._previous.get(sig)
        if previous is not None:
            previous(sig, frame)


__all__ = ["ShutdownSignals"]
