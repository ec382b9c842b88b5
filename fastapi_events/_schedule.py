"""Checking ``dispatch(..., delay=, at=, event_id=)`` at the call, and turning ``delay``/``at`` into a due time.

Kept apart from the outbox package so that ``dispatch`` does not import SQLAlchemy (an optional extra).
"""

from __future__ import annotations

import datetime
import math
import time
from typing import Any

_MAX_ID = 64  # the outbox's event_id column


def check_event_id(event_id: Any) -> str:
    """``event_id`` if it fits the outbox's id column, else a ``ValueError`` saying what an id must be."""
    if not isinstance(event_id, str) or not event_id or len(event_id) > _MAX_ID or not _storable(event_id):
        shown = repr(event_id) if not isinstance(event_id, str) or len(event_id) <= 80 else f"{event_id[:80]!r}..."
        raise ValueError(
            f"event_id must be a non-empty string of at most {_MAX_ID} characters, without NUL characters or "
            f"unpaired surrogates, not {shown}"
        )
    return event_id


def _storable(text: str) -> bool:
    # PostgreSQL text holds no NUL, and no database driver encodes a lone surrogate: such an id would fail at the
    # commit (losing the transaction) instead of at the call.
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def due_time(name: str, delay: Any, at: Any) -> float | None:
    """Epoch seconds the event is due at (``None``: at once); ``delay`` counts from now, the call."""
    if delay is not None and at is not None:
        raise TypeError(f"dispatch({name!r}): pass delay= or at=, not both")
    if delay is not None:
        if isinstance(delay, datetime.timedelta):
            seconds = delay.total_seconds()
        elif isinstance(delay, (int, float)) and not isinstance(delay, bool):
            seconds = float(delay)
        else:
            raise TypeError(
                f"dispatch({name!r}): delay= takes a datetime.timedelta or seconds (int/float), not {delay!r}"
            )
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"dispatch({name!r}): delay= must be a finite, non-negative duration, not {delay!r}")
        return time.time() + seconds
    if at is not None:
        if not isinstance(at, datetime.datetime):
            raise TypeError(f"dispatch({name!r}): at= takes a timezone-aware datetime.datetime, not {at!r}")
        if at.tzinfo is None or at.tzinfo.utcoffset(at) is None:
            raise ValueError(
                f"dispatch({name!r}): at={at!r} is a naive datetime; give it a time zone, e.g. "
                "datetime(..., tzinfo=timezone.utc) or datetime.now(timezone.utc) + timedelta(...)"
            )
        return at.timestamp()
    return None


__all__ = ["check_event_id", "due_time"]
