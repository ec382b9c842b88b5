"""Per-middleware runtime: event buffers, the pumps that hand them to handlers, drain and shutdown.

Every request gets an :class:`EventBuffer` stored in a ContextVar. While the request runs the buffer only collects;
once the app returns (the response is sent) the buffer turns *live*: its events go to the handlers and anything
dispatched later through the same context (a task spawned by the request, a chained dispatch from a handler) is
handed over at once instead of being dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import Any, Protocol

from . import _hooks
from ._event_meta import forget_ids
from ._names import event_name_str
from ._report import ErrorHook, current_error_hook, report_batch_failure
from .handlers.base import Handler, as_handler
from .typing import Event

logger = logging.getLogger("fastapi_events")

# The name is kept from fastapi-events 0.x because users match it in LookupError messages.
event_store: ContextVar[EventBuffer] = ContextVar("fastapi_context")

_runtimes: weakref.WeakValueDictionary[int, Runtime] = weakref.WeakValueDictionary()

# Mutated in place, never rebound.
_on_events = _hooks.on_events


class EventBuffer:
    """The events of one request (or WebSocket connection, or the runtime's out-of-request stream), in order."""

    # Class-level defaults instead of __slots__: a request's buffer is created on every request, so its
    # constructor sets only what differs per request.
    live = False
    loop: asyncio.AbstractEventLoop | None = None
    pump: asyncio.Task[None] | None = None
    #: Outbox rows this request committed, delivered by the middleware once the response is sent.
    committed: list[Any] | None = None

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.events: list[Event] = []
        if runtime.probe_pending:  # the middleware's first request (servers may skip lifespan)
            runtime.first_use()

    def add(self, event: Event) -> None:
        # list.append is atomic, so sync endpoints and sync handlers may dispatch from worker threads.
        self.events.append(event)
        if self.live:
            self.runtime.kick(self)


class Outbox(Protocol):
    """What a runtime needs of its transactional outbox (:class:`~fastapi_events.outbox.SQLAlchemyOutbox`).

    The runtime owns the outbox's lifecycle, for a middleware and a standalone relay alike: it binds the outbox
    to itself once, starts it after the handlers and stops it before draining them.
    """

    def bind(self, runtime: Runtime) -> None:
        """Deliver to ``runtime.handlers``, reporting to ``runtime.on_error``; let ``runtime`` track deliveries."""

    def encode(self, event: Event, due: float | None = None, event_id: str | None = None) -> dict[str, Any]:
        """``dispatch(..., session=s)``: the row for ``event``, due at ``due`` (epoch seconds) when delayed, with
        the caller's ``event_id`` when given (raises at the call site when it cannot be written)."""

    def stage(self, session: Any, row: dict[str, Any], event: Event) -> None:
        """Add the row to ``session``'s transaction; after the commit the outbox hands it to the runtime."""

    async def start(self) -> None: ...

    async def stop(self, timeout: float | None) -> None: ...

    async def deliver(self, records: list[Any]) -> None:
        """Hand rows this request committed to the handlers (awaited by the request, once it is answered)."""

    def spawn(self, records: list[Any]) -> None:
        """:meth:`deliver` in a task the runtime tracks (the request that committed them cannot wait)."""


class Runtime:
    """State shared by one :class:`~fastapi_events.middleware.EventHandlerASGIMiddleware` instance."""

    # Set once construction is done: building the middleware stack is too early to look for telemetry
    # providers, which apps often configure in their startup code.
    probe_pending = False

    def __init__(
        self,
        handlers: Iterable[Any],
        middleware_id: int,
        on_error: ErrorHook | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self.handlers: tuple[Any, ...] = tuple(handlers)
        #: The same handlers seen through the handler protocol (0.x-style handler objects adapted once, here).
        self.delivering: tuple[Handler, ...] = tuple(as_handler(handler) for handler in self.handlers)
        self.middleware_id = middleware_id
        self.on_error = on_error
        #: The transactional outbox whose committed events go to these handlers, when there is one.
        self.outbox = outbox
        self._outbox_running = False
        self.loop: asyncio.AbstractEventLoop | None = None
        # Events dispatched outside any request: ``middleware_id=...``, lifespan hooks, their chained events.
        self.background = EventBuffer(self)
        self.background.live = True
        self._tasks: set[asyncio.Task[None]] = set()
        self._inline = 0
        self._started = False
        _runtimes[middleware_id] = self
        if outbox is not None:
            outbox.bind(self)
        self.probe_pending = True

    # -- handing events over ------------------------------------------------------------------------------------

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.loop is not loop:
            self.loop = loop
            if self.background.events:
                self._kick_now(self.background)

    def kick(self, buffer: EventBuffer) -> None:
        """Make sure a pump is running for a live buffer; callable from any thread."""
        running = asyncio._get_running_loop()
        if running is not None:
            buffer.loop = running
            self._kick_now(buffer)
            return
        loop = buffer.loop or self.loop
        if loop is None or loop.is_closed():
            # No loop yet (dispatch before the app ever ran): the events wait in the buffer and are pumped as soon
            # as the middleware sees a loop (lifespan startup or the first request) or drain() runs.
            return
        loop.call_soon_threadsafe(self._kick_now, buffer)

    def track(self, task: asyncio.Task[None]) -> None:
        """Make :meth:`drain` (and so shutdown) wait for ``task`` too."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _kick_now(self, buffer: EventBuffer) -> None:
        pump = buffer.pump
        # A pump of a loop that was closed under it (TestClient runs a loop per request) will never finish.
        if (pump is not None and not pump.get_loop().is_closed()) or not buffer.events:
            return
        loop = asyncio._get_running_loop() or buffer.loop or self.loop
        assert loop is not None
        task = loop.create_task(self._pump(buffer))
        buffer.pump = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pump(self, buffer: EventBuffer) -> None:
        # A pump runs in its own task context: chained dispatches from handlers must land in this buffer.
        event_store.set(buffer)
        try:
            await self.pump_inline(buffer)
        finally:
            buffer.pump = None
        if buffer.events:  # dispatched by a thread between the last batch and here (not when cancelled)
            self._kick_now(buffer)

    async def pump_inline(self, buffer: EventBuffer) -> None:
        """Hand the buffer's events to the handlers, batch after batch, until it is empty."""
        self._inline += 1
        hook_token = current_error_hook.set(self.on_error) if self.on_error is not None else None
        events = buffer.events
        handlers = self.delivering
        batch: tuple[Event, ...] = ()
        try:
            while events:
                batch = tuple(events)
                # Deleting by count (not swapping lists) keeps appends made meanwhile by other threads.
                del events[: len(batch)]
                if _on_events:
                    for observe in _on_events:
                        observe(self, batch)
                if len(handlers) == 1:  # the usual case, without gather's tasks
                    await _run_handler(handlers[0], self.handlers[0], batch)
                else:
                    await self.deliver(batch)
                forget_ids(batch)
        except asyncio.CancelledError:
            # The server gave up on this request (graceful-shutdown timeout) or the loop is closing: say exactly
            # what may not have been handled instead of losing it silently.
            unfinished = [*batch, *events]
            logger.error(
                "cancelled while handling %d event(s) %s; handlers may not have completed for them",
                len(unfinished),
                [event_name_str(event[0]) for event in unfinished],
            )
            raise
        finally:
            if hook_token is not None:
                current_error_hook.reset(hook_token)
            self._inline -= 1

    async def deliver(self, batch: Sequence[Event]) -> None:
        """One batch to several handlers, concurrently; each gets the batch in dispatch order."""
        if self.handlers:
            await asyncio.gather(
                *[
                    _run_handler(handler, user, batch)
                    for handler, user in zip(self.delivering, self.handlers, strict=True)
                ]
            )

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def first_use(self) -> None:
        """Activate optional instrumentation (OpenTelemetry) once the app's own setup had its chance."""
        self.probe_pending = False
        try:
            _hooks.runtime_starting()
        except Exception:  # telemetry must never stop the app from serving
            logger.exception("enabling OpenTelemetry instrumentation failed; continuing without it")

    async def startup(self) -> None:
        self.first_use()
        self.bind_loop(asyncio.get_running_loop())
        if self._started:
            return
        self._started = True
        for handler, user in zip(self.delivering, self.handlers, strict=True):
            try:
                await handler.startup()
            except Exception as exc:
                report_batch_failure((), user, exc, stage="startup")
        # After the handlers: the outbox delivers what earlier runs left as soon as it starts.
        if self.outbox is not None:
            await self.outbox.start()
            self._outbox_running = True

    async def wind_down(self, timeout: float | None) -> None:
        """Stop taking work in (the outbox's relay), then handle everything handed over; handlers stay open.

        A middleware calls this before the app's own shutdown code, while what handlers use is still there (apps
        dispose of their database engine in their shutdown code); :meth:`shutdown` then stops the handlers.
        """
        if self.outbox is not None and self._outbox_running:
            self._outbox_running = False
            await self.outbox.stop(timeout)
        await self.drain(timeout)

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every event handed over so far was handled, then flush the handlers. True when done in time."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        if self.loop is None or self.loop.is_closed():
            self.bind_loop(loop)
        if self.background.events and self.background.pump is None:
            self.kick(self.background)
        # Polling (rather than awaiting the tasks) also works for tasks of another loop, as TestClient creates.
        # In place: the tasks' done-callbacks hold this very set.
        self._tasks.difference_update([task for task in self._tasks if task.get_loop().is_closed()])
        while self._tasks or self._inline or self.background.events:
            if deadline is not None and loop.time() >= deadline:
                return False
            await asyncio.sleep(0.001)
        for handler, user in zip(self.delivering, self.handlers, strict=True):
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                await handler.flush(remaining)
            except Exception as exc:
                report_batch_failure((), user, exc, stage="flush")
        return deadline is None or loop.time() < deadline

    async def shutdown(self, timeout: float | None) -> None:
        started = time.monotonic()
        if self.outbox is not None and self._outbox_running:
            self._outbox_running = False
            await self.outbox.stop(timeout)
        if not await self.drain(None if timeout is None else max(0.0, timeout - (time.monotonic() - started))):
            pending = len(self.background.events) + len(self._tasks)
            logger.error(
                "shutdown timed out after %.1fs with %d event batch(es) still being handled; they may be lost",
                timeout,
                pending,
            )
        for handler, user in zip(self.delivering, self.handlers, strict=True):
            remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
            try:
                await handler.shutdown(remaining)
            except Exception as exc:
                report_batch_failure((), user, exc, stage="shutdown")
        self._started = False


async def _run_handler(handler: Handler, user: Any, batch: Sequence[Event]) -> None:
    try:
        await handler.deliver(batch)
    except Exception as exc:
        report_batch_failure(batch, user, exc)


def get_runtime(middleware_id: int) -> Runtime | None:
    return _runtimes.get(middleware_id)


def all_runtimes() -> list[Runtime]:
    return list(_runtimes.values())


async def drain(timeout: float | None = None) -> bool:
    """Wait until every event dispatched so far has been handled and every handler flushed.

    Events of requests still in flight are handed over when their response is sent; call this after the request.
    Returns ``False`` when ``timeout`` (seconds) ran out first.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    done = True
    for runtime in all_runtimes():
        remaining = None if deadline is None else max(0.0, deadline - loop.time())
        done = await runtime.drain(remaining) and done
    return done
