"""Blocking work off the event loop: the broker SDKs' calls and the spool writer.

Each owner (a transport, a consumer source, a spool) gets threads of its own rather than sharing the loop's
default executor: a consumer parked in a long poll, or a producer waiting on a slow broker, must not hold up
another broker's calls, Starlette's sync endpoints or ``asyncio.to_thread`` users. Every thread is named
``fastapi_events-<owner>`` (``-<n>`` for pool workers), so a thread dump says which part of the package it
belongs to. Sync *event handlers* run elsewhere (a pool tuned for short calls, see ``handlers.local``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

THREAD_PREFIX = "fastapi_events-"


def thread_name(owner: str) -> str:
    """The name of the threads working for ``owner`` (e.g. ``"sqs-transport"``)."""
    return THREAD_PREFIX + owner


def start_thread(owner: str, target: Callable[..., object], *args: Any) -> threading.Thread:
    """Start a daemon thread for a long-running loop of ``owner`` (a poller, a writer); daemon so that a
    stuck SDK call never keeps the process from exiting."""
    thread = threading.Thread(target=target, args=args, name=thread_name(owner), daemon=True)
    thread.start()
    return thread


class BlockingExecutor:
    """The threads one owner runs its blocking calls in, awaited from the event loop.

    ``workers=1`` runs the calls one after another in submission order, which SDK clients that are not
    thread-safe need. Threads are started on first use; after :meth:`shutdown` the next :meth:`run` starts
    fresh ones, so an owner can close and reopen.
    """

    def __init__(self, owner: str, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.owner = owner
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(*args)`` in one of this owner's threads and return its result (or raise its error).

        Cancelling the awaiting task does not interrupt the call, which finishes in its thread.
        """
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=thread_name(self.owner))
        return await asyncio.wrap_future(self._pool.submit(func, *args))

    def shutdown(self) -> None:
        """Let the threads end after the calls already submitted; never waits (callable from the loop)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)


async def run_once(owner: str, func: Callable[..., T], *args: Any) -> T:
    """Run a one-off blocking call (e.g. joining a thread) in a thread of its own, named after ``owner``."""
    executor = BlockingExecutor(owner)
    try:
        return await executor.run(func, *args)
    finally:
        executor.shutdown()


__all__ = ["THREAD_PREFIX", "BlockingExecutor", "run_once", "start_thread", "thread_name"]
