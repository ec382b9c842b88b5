"""The default payload-schema registry used by ``dispatch()``."""

from __future__ import annotations

from .base import BaseEventPayloadSchemaRegistry


class EventPayloadSchemaRegistry(BaseEventPayloadSchemaRegistry):
    pass


registry = EventPayloadSchemaRegistry()

__all__ = ["EventPayloadSchemaRegistry", "registry"]
