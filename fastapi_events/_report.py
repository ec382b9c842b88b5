"""Where handler failures go: the ``fastapi_events`` logger and the middleware's ``on_error`` hook.

A failure is never allowed to escape into the ASGI server or stop other handlers; it is reported here instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any

from . import _hooks
from ._names import event_name_str
from .typing import Event

logger = logging.getLogger("fastapi_events")

#: ``on_error(event, handler_name, exc)``; may be sync or async.
ErrorHook = Callable[[Event, str, BaseException], Awaitable[None] | None]

# Set by the runtime around handler execution so that nested code (LocalHandler's registered functions, forwarders)
# reports to the hook of the middleware that is running it.
current_error_hook: ContextVar[ErrorHook | None] = ContextVar("fastapi_events_error_hook", default=None)

_background: set[asyncio.Task[Any]] = set()


def qualified_name(obj: Any) -> str:
    """``module.QualName`` of a function, method, callable object or handler instance."""
    target = obj
    if not hasattr(target, "__qualname__"):
        target = type(obj)
    module = getattr(target, "__module__", None) or "?"
    return f"{module}.{getattr(target, '__qualname__', repr(target))}"


def report_failure(event: Event, handler: Any, exc: BaseException) -> None:
    """Report that ``handler`` (a handler object, a function or a name) failed on ``event``, and carry on.

    Public as ``fastapi_events.report_failure``: a custom handler calls it for an event it could not handle
    instead of raising, so that the other events still flow. It logs at ERROR on the ``fastapi_events`` logger
    (with ``event_name`` and ``handler`` as record attributes) and calls the middleware's ``on_error`` hook.
    """
    report_batch_failure((event,), handler, exc)


def report_batch_failure(events: Sequence[Event], handler: Any, exc: BaseException, *, stage: str = "handle") -> None:
    """Report one failure that hit ``events`` (empty for lifecycle stages such as ``startup`` or ``flush``)."""
    names = [event_name_str(event[0]) for event in events]
    shown = names[0] if len(names) == 1 else (", ".join(names) if names else f"<{stage}>")
    handler_name = handler if isinstance(handler, str) else qualified_name(handler)
    logger.error(
        "handler %s failed for event %s: %s: %s",
        handler_name,
        repr(shown) if len(names) == 1 else f"[{shown}]",
        type(exc).__name__,
        exc,
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"event_name": shown, "handler": handler_name, "stage": stage},
    )
    if _hooks.on_handler_failure and stage == "handle":
        for event in events:
            _hooks.handler_failed(event, handler_name, exc)
    hook = current_error_hook.get()
    if hook is None:
        return
    for event in events:
        try:
            result = hook(event, handler_name, exc)
        except Exception:
            logger.exception("on_error hook failed while reporting %s for event %r", handler_name, shown)
            continue
        if result is not None:
            _spawn_hook(result, handler_name, event_name_str(event[0]))


def _spawn_hook(awaitable: Awaitable[None], handler_name: str, name: str) -> None:
    async def run() -> None:
        try:
            await awaitable
        except Exception:
            logger.exception("on_error hook failed while reporting %s for event %r", handler_name, name)

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # called from a worker thread: the hook's coroutine needs a loop
        asyncio.run(run())
        return
    task = loop.create_task(run())
    _background.add(task)
    task.add_done_callback(_background.discard)
