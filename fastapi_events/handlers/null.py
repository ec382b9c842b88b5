"""A handler that drops every event: useful to switch event handling off per environment."""

from __future__ import annotations

from collections.abc import Iterable

from ..typing import Event
from .base import BaseEventHandler


class NullHandler(BaseEventHandler):
    async def handle(self, event: Event) -> None:
        return None

    async def handle_many(self, events: Iterable[Event]) -> None:
        return None


__all__ = ["NullHandler"]
