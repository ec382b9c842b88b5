"""pytest plugin (entry point ``pytest11``): the ``captured_events`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import CapturedEvents, capture_events


@pytest.fixture
def captured_events() -> Iterator[CapturedEvents]:
    """Every event dispatched during the test, as ``(name, payload)`` tuples in order; handlers still run."""
    with capture_events() as events:
        yield events
