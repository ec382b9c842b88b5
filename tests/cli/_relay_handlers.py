"""Handlers for the standalone relay tests: every event becomes a JSON line in ``$FE_OUT``."""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi_events import EventMeta, event_meta
from fastapi_events.handlers.local import Depends, LocalHandler

local = LocalHandler()


@local.register(event_name="*")
def write_line(event: Any, meta: EventMeta = Depends(event_meta)) -> None:
    with open(os.environ["FE_OUT"], "a") as out:
        out.write(json.dumps({"id": meta.id, "name": meta.name, "payload": event[1]}) + "\n")


handlers = [local]
