"""An app that schedules (and cancels) delayed outbox events in one transaction, and a handler timing them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from fastapi import Body, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from fastapi_events import dispatch
from fastapi_events.handlers.base import BaseEventHandler
from fastapi_events.outbox import SQLAlchemyOutbox
from fastapi_events.typing import Event
from tests.outbox._app import outbox_app


@dataclass(frozen=True)
class Handled:
    event_id: str
    name: str
    payload: Any
    at: float  # time.time() when the handler got it

    @property
    def lateness(self) -> float:
        """Seconds after the due time the scheduling request computed (just before its dispatch call)."""
        return self.at - float(self.payload["due"])


class Clock(BaseEventHandler):
    """Records every event it gets, with the time it got it."""

    def __init__(self) -> None:
        self.handled: list[Handled] = []

    async def handle(self, event: Event) -> None:
        at = time.time()
        self.handled.append(Handled(getattr(event, "event_id", ""), str(event[0]), event[1], at))

    def ids(self) -> list[str]:
        return [h.event_id for h in self.handled]

    def names(self) -> list[str]:
        return [h.name for h in self.handled]


def schedule(session: Any, outbox: SQLAlchemyOutbox, request: dict[str, Any]) -> None:
    """Dispatch ``events``, then cancel the ids of ``cancel``, then reschedule ``reschedule`` (cancel + dispatch)."""
    for item in request.get("events", []):
        _dispatch(session, item)
    for event_id in request.get("cancel", []):
        outbox.cancel(session, event_id)
    for item in request.get("reschedule", []):
        outbox.cancel(session, item["id"])
        _dispatch(session, item)


def _dispatch(session: Any, item: dict[str, Any]) -> None:
    options: dict[str, Any] = {}
    if "id" in item:
        options["event_id"] = item["id"]
    if "delay" in item:  # without: an event handled at once (still with the caller's id, if any)
        options["delay"] = float(item["delay"])
    # The due time the test checks against is taken before the call, so never later than the event's own.
    payload = {**item.get("payload", {}), "due": time.time() + options.get("delay", 0.0)}
    dispatch(item["name"], payload, session=session, **options)


def make_app(
    engine: sa.Engine | AsyncEngine, handlers: Sequence[Any], **outbox_options: Any
) -> tuple[FastAPI, SQLAlchemyOutbox]:
    """``POST /schedule {"events": [{"name", "delay", "id"?, "payload"?}], "cancel": [ids], "reschedule": [events],
    "end": "commit"}``."""
    app, outbox = outbox_app(engine, handlers, **outbox_options)

    if isinstance(engine, AsyncEngine):

        @app.post("/schedule")
        async def schedule_async(request: dict[str, Any] = Body(...)) -> dict[str, str]:
            async with AsyncSession(engine) as session:
                schedule(session, outbox, request)
                if request.get("end", "commit") == "commit":
                    await session.commit()
                else:
                    await session.rollback()
            return {"ok": "yes"}

    else:

        @app.post("/schedule")
        def schedule_sync(request: dict[str, Any] = Body(...)) -> dict[str, str]:
            with Session(engine) as session:
                schedule(session, outbox, request)
                if request.get("end", "commit") == "commit":
                    session.commit()
                else:
                    session.rollback()
            return {"ok": "yes"}

    return app, outbox


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


__all__ = ["Clock", "Handled", "make_app", "percentile", "schedule"]
