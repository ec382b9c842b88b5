"""Small apps and helpers shared by the core tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI

from fastapi_events.handlers.base import BaseEventHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.typing import Event


class Recorder(BaseEventHandler):
    """A handler that remembers what it got, batch by batch."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []

    async def handle_many(self, events: Iterable[Event]) -> None:
        self.batches.append(list(events))

    @property
    def events(self) -> list[Event]:
        return [event for batch in self.batches for event in batch]


def app_with(*handlers: Any, **middleware_kwargs: Any) -> FastAPI:
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=list(handlers), **middleware_kwargs)
    return app
