"""``EchoHandler``: pretty-print every event to stdout, for debugging."""

from __future__ import annotations

import sys
from pprint import pformat
from typing import Any, TextIO

from .._names import event_name_str
from ..typing import Event
from .base import BaseEventHandler


class EchoHandler(BaseEventHandler):
    def __init__(self, *args: Any, stream: TextIO | None = None, **kwargs: Any) -> None:
        self._stream = stream

    async def handle(self, event: Event) -> None:
        name, payload = event
        stream = self._stream or sys.stdout
        stream.write(f"{pformat((event_name_str(name), payload), sort_dicts=False)}\n")
        stream.flush()


__all__ = ["EchoHandler"]
