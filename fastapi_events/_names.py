"""Event-name normalisation: Enum members travel and match by their value."""

from __future__ import annotations

from enum import Enum
from typing import Any


def event_name_str(name: Any) -> str:
    """The string form of an event name (``Enum`` members by value), used for matching and the wire."""
    if type(name) is str:
        return name
    if isinstance(name, Enum):
        return str(name.value)
    return str(name)
