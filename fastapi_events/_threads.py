"""Running sync handler code off the event loop, with the caller's context.

A pool of our own rather than ``loop.run_in_executor``: slow sync handlers must not starve the threadpool
Starlette runs sync endpoints in, and the executor pays a concurrent.futures Future, its callback chain and one
thread wake-up plus one ``call_soon_threadsafe`` per call.

What a thread hop costs is the two wake-ups (worker thread, then event loop), not the call, so both are coalesced
across concurrent requests:

* jobs go into one shared queue; a worker is woken once per turn of the submitting loop, and only when no
  other is awake: an awake worker takes every job queued meanwhile without being signalled again;
* results for a loop go into that loop's :class:`_Inbox`; only the first result of a batch schedules a
  ``call_soon_threadsafe``, and the loop settles everything gathered by then in that one callback.

A job that runs long (a handler blocked on I/O) must not hold up the jobs queued behind it: once every awake
worker has been inside its current job for ``STALL`` seconds, another one is woken (at the next submit, or by a
timer on a submitting loop when nothing else is submitted).
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

MAX_WORKERS = 16
# Twice the default GIL switch interval: a worker that merely waited for the GIL does not look blocked.
STALL = 0.01

_SEARCHING = float("inf")  # ``_Worker.started`` of an awake worker between two jobs: available
_ASLEEP = float("-inf")  # ... of a sleeping one: not available until woken


class _Inbox:
    """Results on their way back to one event loop."""

    __slots__ = ("__weakref__", "loop", "results", "scheduled", "wake_pending")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak: the inbox is the value of a dict weakly keyed by this very loop.
        self.loop = weakref.ref(loop)
        self.results: deque[tuple[asyncio.Future[Any], bool, Any]] = deque()
        self.scheduled = False
        self.wake_pending = False  # a worker wake-up is scheduled on this loop (see _Pool.submit)

    def post(self, future: asyncio.Future[Any], ok: bool, value: Any) -> None:
        """Called by workers. A racing second worker may schedule a redundant delivery; that one finds little
        or nothing to do, which is cheaper than a lock around every result."""
        self.results.append((future, ok, value))
        if self.scheduled:
            return
        self.scheduled = True
        loop = self.loop()
        try:
            if loop is None:
                raise RuntimeError("event loop is gone")
            loop.call_soon_threadsafe(self.deliver)
        except RuntimeError:  # the loop closed while the job ran: nobody is waiting any more
            self.results.clear()
            self.scheduled = False

    def deliver(self) -> None:
        # Reset before emptying: a result posted from now on schedules its own delivery.
        self.scheduled = False
        results = self.results
        while results:
            future, ok, value = results.popleft()
            if future.done():  # cancelled meanwhile
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


_Job = tuple[_Inbox, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...], contextvars.Context]


class _Worker:
    __slots__ = ("started", "wake")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()  # held while the worker sleeps; released to wake it
        self.started = _SEARCHING  # time.monotonic() at the start of the current job


class _Pool:
    def __init__(self, max_workers: int) -> None:
        self._max_workers = max_workers
        self._reset()

    def _reset(self) -> None:
        # Also the fork handler: a child process has none of the parent's threads.
        self._jobs: deque[_Job] = deque()
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._sleeping: list[_Worker] = []
        self._stopping = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def submit(self, job: _Job, loop: asyncio.AbstractEventLoop) -> None:
        self._jobs.append(job)
        inbox = job[0]
        # The wake-up waits for the loop's next turn: a worker woken now would only wait for the GIL, and then
        # force the loop to hand it over mid-work; by then every job submitted meanwhile is queued as well.
        if not inbox.wake_pending:
            inbox.wake_pending = True
            loop.call_soon(self._flush, inbox, loop)

    def _flush(self, inbox: _Inbox, loop: asyncio.AbstractEventLoop) -> None:
        inbox.wake_pending = False
        # Under the lock: a worker decides to sleep under it after finding the queue empty.
        with self._lock:
            new = self._wake_if_needed() if self._jobs else None
        if new is not None:
            threading.Thread(target=self._work, args=(new,), name="fastapi_events_sync", daemon=True).start()
        timer_loop = self._timer_loop
        if self._timer is None or timer_loop is None or not timer_loop.is_running():
            self._arm(loop)

    def _wake_if_needed(self) -> _Worker | None:
        """Under the lock: wake a worker unless an available one is awake; a new one to start is returned."""
        deadline = time.monotonic() - STALL
        for worker in self._workers:
            if worker.started > deadline:  # between jobs, or in a job that has not run long yet
                return None
        if self._sleeping:
            worker = self._sleeping.pop()
            worker.started = _SEARCHING
            worker.wake.release()
            return None
        if len(self._workers) >= self._max_workers:
            return None  # every worker is busy: the jobs wait
        worker = _Worker()
        self._workers.append(worker)
        return worker

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer_loop = loop
        self._timer = loop.call_later(STALL, self._watch, loop)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        with self._lock:
            if not self._jobs:
                return  # nothing queued behind a long job: the next submit re-arms
            new = self._wake_if_needed()
        if new is not None:
            threading.Thread(target=self._work, args=(new,), name="fastapi_events_sync", daemon=True).start()
        self._arm(loop)

    def _work(self, me: _Worker) -> None:
        jobs = self._jobs
        while True:
            try:
                inbox, future, func, args, context = jobs.popleft()
            except IndexError:
                with self._lock:
                    if jobs:
                        continue
                    if self._stopping:
                        return
                    me.started = _ASLEEP
                    self._sleeping.append(me)
                me.wake.acquire()
                continue
            me.started = time.monotonic()
            try:
                value, ok = context.run(func, *args), True
            except BaseException as exc:
                value, ok = exc, False
            me.started = _SEARCHING
            inbox.post(future, ok, value)
            # Do not keep the job's objects alive while sleeping until the next one.
            del inbox, future, func, args, context, value

    def shutdown(self) -> None:
        with self._lock:
            self._stopping = True
            sleeping, self._sleeping = self._sleeping, []
        for worker in sleeping:
            worker.wake.release()


_pool = _Pool(MAX_WORKERS)
atexit.register(_pool.shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool._reset)

_inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox] = weakref.WeakKeyDictionary()
_last: _Inbox | None = None  # the usual case is one loop: skip the weak dictionary's lookup


def _inbox(loop: asyncio.AbstractEventLoop) -> _Inbox:
    global _last
    inbox = _last
    if inbox is not None and inbox.loop() is loop:
        return inbox
    inbox = _inboxes.get(loop)
    if inbox is None:
        inbox = _inboxes[loop] = _Inbox(loop)
    _last = inbox
    return inbox


def submit(func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Start ``func(*args)`` in a worker thread, with a copy of the caller's context (so that ``dispatch()``
    works inside); the returned future of the running loop gets its result. A plain function rather than a
    coroutine: awaiting the future directly spares the caller a coroutine frame per call."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    _pool.submit((_inbox(loop), future, func, args, contextvars.copy_context()), loop)
    return future


async def run_sync(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in a worker thread (see :func:`submit`)."""
    return await submit(func, *args)
