"""Type aliases shared by the public API (same names as fastapi-events 0.x)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from enum import Enum
from typing import Any, Union

EventName = Union[str, Enum]  # noqa: UP007 - kept as in 0.x
Payload = Union[dict, Any]  # type: ignore[type-arg]  # noqa: UP007 - kept as in 0.x
PydanticModel = Any
# A plain 2-tuple so that ``event_name, payload = event`` keeps working in user code.
Event = tuple[EventName, Any]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = [
    "ASGIApp",
    "Event",
    "EventName",
    "Message",
    "Payload",
    "PydanticModel",
    "Receive",
    "Scope",
    "Send",
]
