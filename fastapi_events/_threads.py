"""Running sync handler code off the event loop, with the caller's context.

A small pool of our own rather than ``loop.run_in_executor``: slow sync handlers must not starve the threadpool
Starlette runs sync endpoints in, and one round trip here is a queue put, a thread wake-up and a single
``call_soon_threadsafe`` - without the concurrent.futures Future, its callback chain and per-submit thread
accounting that dominate the executor's cost for short handlers.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...], contextvars.Context]

MAX_WORKERS = 16


def _resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class _Pool:
    def __init__(self, max_workers: int) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._max_workers = max_workers
        self._lock = threading.Lock()

    def submit(self, job: _Job) -> None:
        self._jobs.put(job)
        # Start a thread only when none is idle: a busy handler must not delay the others.
        if not self._idle.acquire(blocking=False):
            with self._lock:
                if len(self._threads) < self._max_workers:
                    thread = threading.Thread(
                        target=self._work, name=f"fastapi_events_{len(self._threads)}", daemon=True
                    )
                    self._threads.append(thread)
                    thread.start()

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            loop, future, func, args, context = job
            try:
                value, ok = context.run(func, *args), True
            except BaseException as exc:
                value, ok = exc, False
            del job, func, args, context
            # RuntimeError: the loop closed while we ran; nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future, ok, value)
            del future, value
            self._idle.release()

    def shutdown(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)


_pool = _Pool(MAX_WORKERS)
atexit.register(_pool.shutdown)


async def run_sync(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in a worker thread; the context is copied so that ``dispatch()`` works inside."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    _pool.submit((loop, future, func, args, contextvars.copy_context()))
    return await future
