"""Process-wide observers of ``dispatch()``: test capture and tracing.

Kept as plain module globals that ``dispatch()`` checks for emptiness, so that they cost nothing when unused.
"""

from __future__ import annotations

from collections.abc import Callable

from .typing import Event

#: Lists receiving every dispatched event (see :mod:`fastapi_events.testing`).
recorders: list[list[Event]] = []

#: Called with each event before it is buffered; returns the event to buffer (tracing attaches context here).
on_dispatch: list[Callable[[Event], Event]] = []
