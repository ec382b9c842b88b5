"""Running sync handler code off the event loop, with the caller's context."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# A pool of our own: slow sync handlers must not starve the threadpool Starlette runs sync endpoints in.
_executor: ThreadPoolExecutor | None = None


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fastapi_events")
    return _executor


async def run_sync(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in a worker thread; the context is copied so that ``dispatch()`` works inside."""
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_get_executor(), context.run, func, *args)
