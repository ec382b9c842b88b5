"""``EventHandlerASGIMiddleware``: collects a request's events and hands them to handlers once it is answered."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any

from . import _hooks
from ._report import ErrorHook
from ._runtime import EventBuffer, Outbox, Runtime, event_store
from .typing import ASGIApp, Message, Receive, Scope, Send

DEFAULT_SHUTDOWN_TIMEOUT = 10.0


class EventHandlerASGIMiddleware:
    """Pure ASGI middleware (no ``BaseHTTPMiddleware``) for FastAPI and Starlette.

    * ``http``: events dispatched while the request runs are handled after the app returned, i.e. after the
      response was sent; the ASGI call stays open until they are handled, so servers' graceful shutdown and
      ``TestClient`` both wait for them. Events dispatched later from the request's tasks are handled at once,
      and so are those of a response that streams its body (from its first part on), in dispatch order.
    * ``websocket``: events are handled as they are dispatched, not held until the connection closes.
    * ``lifespan``: handlers are started before the app's startup; on shutdown every pending event is handled
      (bounded by ``shutdown_timeout`` seconds) and handlers are flushed and stopped.
    """

    def __init__(
        self,
        app: ASGIApp,
        handlers: Iterable[Any],
        middleware_id: int | None = None,
        *,
        on_error: ErrorHook | None = None,
        shutdown_timeout: float | None = DEFAULT_SHUTDOWN_TIMEOUT,
        outbox: Outbox | None = None,
    ) -> None:
        self.app = app
        self.middleware_id = id(self) if middleware_id is None else middleware_id
        self.shutdown_timeout = shutdown_timeout
        self._runtime = Runtime(handlers, self.middleware_id, on_error, outbox)

    @property
    def handlers(self) -> tuple[Any, ...]:
        return self._runtime.handlers

    @property
    def outbox(self) -> Outbox | None:
        """The :class:`~fastapi_events.outbox.SQLAlchemyOutbox` given to the middleware (kept by its runtime)."""
        return self._runtime.outbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type != "http":
            if scope_type == "websocket":
                await self._websocket(scope, receive, send)
            elif scope_type == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        # HTTP is the hot path: handled inline, without a further coroutine frame.
        runtime = self._runtime
        if runtime.probe_pending and _hooks.on_app_start:  # the first request; servers may skip lifespan
            _hooks.app_starting(scope.get("app"))
        buffer = EventBuffer(runtime)
        token = event_store.set(buffer)

        def streaming_send(message: Message) -> Awaitable[None]:
            # A body sent in parts may stream for minutes (SSE, progress): from its first part on the response is
            # under way, so the request's events are handled as they come instead of when the stream ends.
            # Not a coroutine itself: handing back send's awaitable saves a frame on every request's sends.
            if not buffer.live and message.get("more_body") and message["type"] == "http.response.body":
                buffer.live = True
                runtime.kick(buffer)
            return send(message)

        try:
            await self.app(scope, receive, streaming_send)
        except BaseException:
            # The app failed or the request was cancelled: what was dispatched before still counts, but this task
            # may not be allowed to await any more, so a tracked task takes over.
            buffer.live = True
            runtime.kick(buffer)
            if buffer.committed is not None and runtime.outbox is not None:
                runtime.outbox.spawn(buffer.committed)
            raise
        else:
            if buffer.pump is not None:
                await _pumped(buffer)
            buffer.live = True
            if buffer.events:
                await runtime.pump_inline(buffer)
            if buffer.committed is not None and runtime.outbox is not None:
                await runtime.outbox.deliver(buffer.committed)
        finally:
            event_store.reset(token)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        buffer = EventBuffer(self._runtime)
        buffer.live = True
        token = event_store.set(buffer)
        try:
            await self.app(scope, receive, send)
        finally:
            event_store.reset(token)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self._runtime
        timeout = self.shutdown_timeout

        async def wrapped_receive() -> Message:
            message = await receive()
            kind = message["type"]
            if kind == "lifespan.startup":
                # Before the app's own startup, so that startup code can already dispatch into started handlers.
                await runtime.startup()
            elif kind == "lifespan.shutdown":
                # Before the app's own shutdown, while the resources handlers use are still open.
                await runtime.wind_down(timeout)
            return message

        async def wrapped_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                # The app's shutdown hooks may have dispatched too; handle those, then flush and stop handlers.
                await runtime.shutdown(timeout)
            await send(message)

        runtime.bind_loop(asyncio.get_running_loop())
        _hooks.app_starting(scope.get("app"))
        # Code run from lifespan (startup hooks and the tasks they spawn) dispatches without a middleware_id.
        token = event_store.set(runtime.background)
        try:
            await self.app(scope, wrapped_receive, wrapped_send)
        finally:
            event_store.reset(token)


async def _pumped(buffer: EventBuffer) -> None:
    """Wait for the pump of a streamed response: a second pump of the same buffer would break dispatch order."""
    while (pump := buffer.pump) is not None and not pump.done():
        # asyncio.wait, not await: cancelling this request must not cancel the pump, which other events need.
        await asyncio.wait((pump,))


__all__ = ["EventHandlerASGIMiddleware"]
