from __future__ import annotations

import gc
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

LOOPBACK = ("127.0.0.1", 40000)
BASE_URL = "http://127.0.0.1:8000"  # the Host header: a loopback name, as a browser on this machine sends
ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def client_for() -> ClientFactory:
    """``async with client_for(app, client=(host, port)) as client``: the app in process, as that peer."""

    @asynccontextmanager
    async def open_client(app: FastAPI, client: tuple[str, int] = LOOPBACK) -> AsyncIterator[httpx.AsyncClient]:
        gc.collect()  # middlewares of earlier tests' apps would show up in the handlers view
        transport = httpx.ASGITransport(app=app, client=client)
        try:
            async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
                yield http
        finally:
            app.state.inspector.recorder.close()

    return open_client


def page_token(html: str) -> str:
    found = re.search(r'name="inspector-token" content="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


@pytest.fixture(autouse=True)
def no_hook_left_behind() -> Iterator[None]:
    """A recorder left installed would change the code paths (and hook assertions) of every later test."""
    yield
    from fastapi_events import _hooks

    gc.collect()  # an inspector dropped without close() takes its history's hooks with it
    lists = (
        _hooks.on_dispatch,
        _hooks.on_handle,
        _hooks.on_dead_letter,
        _hooks.on_handler_failure,
        _hooks.on_consume,
        _hooks.on_consumer_lag,
        _hooks.on_forward_batch,
    )
    leftovers = [h for hooks in lists for h in hooks]
    assert not [h for h in leftovers if "inspector" in getattr(h, "__module__", "")], leftovers
    assert not _hooks.time_handlers, "a history left handler timing on"
