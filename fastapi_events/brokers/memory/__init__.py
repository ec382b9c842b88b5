"""The in-memory broker: topics inside the process, for tests (public as ``fastapi_events.testing.InMemoryBroker``)."""

from __future__ import annotations

from ._broker import InMemoryBroker, TopicSnapshot
from ._forwarder import InMemoryForwardHandler
from ._source import MemorySource
from ._topic import DeadLetterRecord
from ._transport import MemoryTransport

__all__ = [
    "DeadLetterRecord",
    "InMemoryBroker",
    "InMemoryForwardHandler",
    "MemorySource",
    "MemoryTransport",
    "TopicSnapshot",
]
