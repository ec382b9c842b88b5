"""All spool I/O of a process runs in one dedicated thread per spool file, never on the event loop.

Operations queued while a transaction is running are committed together with the next one (group commit):
under load, many requests' events share one ``COMMIT``, which is what keeps the amortised cost per event low.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..concurrency import run_once, start_thread
from ._spool import SpoolDB
from ._store import DeadLetter, Entry, Retry
from ._transport import OutboundMessage

logger = logging.getLogger("fastapi_events.delivery")

T = TypeVar("T")
_MAX_GROUP = 512  # operations per transaction: bounds how long one commit keeps callers waiting


@dataclass(slots=True)
class _Op:
    fn: Callable[[SpoolDB], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class SpoolWriter:
    """The thread owning a :class:`SpoolDB`. Shared by every forwarder of the process using the same file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[list[_Op] | None] = queue.SimpleQueue()
        self._outgoing: dict[asyncio.AbstractEventLoop, list[_Op]] = {}
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self._users = 0

    def start(self) -> None:
        self._thread = start_thread(f"spool:{self.path}", self._run)

    async def call(self, fn: Callable[[SpoolDB], T]) -> T:
        """Run ``fn(db)`` in the writer thread, inside a transaction, and wait for the commit."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        outgoing = self._outgoing.get(loop)
        if outgoing is None:
            # Operations issued during one loop iteration (e.g. many requests finishing together) travel to the
            # thread as one item: one wake-up of the writer thread instead of one per request.
            outgoing = self._outgoing[loop] = []
            loop.call_soon(self._hand_over, loop)
        outgoing.append(_Op(fn, loop, future))
        return await future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        ops = self._outgoing.pop(loop, None)
        if ops:
            self._queue.put(ops)

    def _run(self) -> None:
        try:
            db = SpoolDB(self.path, lock=True)
        except BaseException as exc:
            self._open_error = exc
            db = None
        self._ready.set()
        while True:
            first = self._queue.get()
            if first is None:
                break
            ops = list(first)
            stop = False
            while len(ops) < _MAX_GROUP:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                ops.extend(more)
            self._execute(db, ops)
            if stop:
                break
        if db is not None:
            db.close()

    def _execute(self, db: SpoolDB | None, ops: list[_Op]) -> None:
        results: list[tuple[Any, BaseException | None]] = []
        if db is None:
            failure: BaseException = self._open_error or RuntimeError("spool is not open")
            results = [(None, failure)] * len(ops)
        else:
            try:
                db.begin()
                for op in ops:
                    try:
                        results.append((op.fn(db), None))
                    except Exception as exc:  # this operation fails alone; the others still commit
                        results.append((None, exc))
                db.commit()
            except Exception as exc:
                db.rollback()
                results = [(None, exc)] * len(ops)
        # One wake-up per loop for the whole group: call_soon_threadsafe writes to the loop's self-pipe.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
        for op, (value, error) in zip(ops, results, strict=True):
            by_loop.setdefault(op.loop, []).append((op.future, value, error))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the caller's loop is already closed
                loop.call_soon_threadsafe(_settle_all, settled)

    def stop(self) -> None:
        for loop in list(self._outgoing):  # not yet handed over: send them before the stop marker
            self._hand_over(loop)
        self._queue.put(None)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def _settle_all(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, value, error in settled:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


_registry: dict[str, SpoolWriter] = {}
_registry_lock = threading.Lock()


def _registry_key(path: str | os.PathLike[str]) -> str:
    # abspath, not realpath: only a getcwd(), no filesystem walk on the event loop.
    return os.path.abspath(os.fspath(path))


async def acquire(path: str | os.PathLike[str]) -> SpoolWriter:
    """The process-wide writer for ``path`` (started on first use); pair with :func:`release`."""
    key = _registry_key(path)
    with _registry_lock:
        writer = _registry.get(key)
        if writer is None:
            writer = _registry[key] = SpoolWriter(key)
            writer.start()
        writer._users += 1
    try:
        await writer.call(lambda db: None)  # surfaces open errors (permissions, lock held elsewhere)
    except BaseException:
        await release(writer)
        raise
    return writer


async def release(writer: SpoolWriter) -> None:
    with _registry_lock:
        writer._users -= 1
        last = writer._users <= 0
        if last:
            _registry.pop(writer.path, None)
    if last:
        writer.stop()
        # Joined in a helper thread: the final commit must not block the event loop.
        await run_once("spool-close", writer.join, 30.0)


class SpoolStore:
    """:class:`~fastapi_events.delivery._store.PendingStore` backed by the spool, for one destination."""

    durable = True

    def __init__(self, writer: SpoolWriter, destination: str) -> None:
        self.writer = writer
        self.destination = destination
        self._queued = 0

    async def load_count(self) -> int:
        self._queued = await self.writer.call(lambda db: db.count_pending(self.destination))
        return self._queued

    def queued(self) -> int:
        return self._queued

    async def add(self, messages: Sequence[OutboundMessage]) -> tuple[list[Entry], list[OutboundMessage]]:
        msgs = list(messages)
        seqs = await self.writer.call(lambda db: db.insert_pending(self.destination, msgs, time.time()))
        self._queued += len(seqs)
        return [Entry(seq, m) for seq, m in zip(seqs, msgs, strict=True)], []

    async def due(self, now: float, limit: int) -> tuple[list[Entry], float | None]:
        return await self.writer.call(lambda db: db.due(self.destination, now, limit))

    async def resolve(
        self, delivered: Sequence[Entry], retries: Sequence[Retry], dead: Sequence[tuple[Entry, DeadLetter]]
    ) -> None:
        await self.writer.call(lambda db: db.resolve(self.destination, delivered, retries, dead, time.time()))
        self._queued = max(0, self._queued - len(delivered) - len(dead))

    async def add_dead(self, dead: Sequence[DeadLetter]) -> None:
        await self.writer.call(lambda db: db.insert_dead(self.destination, dead, time.time()))

    async def close(self) -> None:
        await release(self.writer)


__all__ = ["SpoolStore", "SpoolWriter", "acquire", "release"]
