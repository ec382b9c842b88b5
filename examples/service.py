"""A small FastAPI service that shows events flowing, on embedded defaults (no broker, no cloud account).

Run it with ``make example`` (or ``uvicorn examples.service:app``) and try::

    curl -X POST localhost:8000/users -H 'content-type: application/json' -d '{"email": "ada@example.com"}'
    curl localhost:8000/audit

Every request prints its events (EchoHandler); local handlers with FastAPI dependencies keep an audit log and
send a (pretend) welcome mail; a pydantic model is dispatched as an event and its payload validated. Open
http://127.0.0.1:8000/_events/ to watch the events, handlers and dead letters live (the event inspector).

New users are stored in a SQLite database together with their ``user.created`` event (the transactional
outbox): the event is handled only once the user is committed, and still handled after a crash - the next start
delivers it. The database is a fresh temporary file unless ``EXAMPLE_DB`` names one to keep across restarts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.echo import EchoHandler
from fastapi_events.handlers.local import local_handler
from fastapi_events.inspector import Inspector
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.outbox import SQLAlchemyOutbox
from fastapi_events.registry.payload_schema import registry as payload_schema
from fastapi_events.typing import Event

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
log = logging.getLogger("example")

AUDIT_LOG: list[dict[str, object]] = []


# -- events ------------------------------------------------------------------------------------------------------


class UserCreated(BaseModel):
    """Dispatched as a model: the event name comes from ``__event_name__``."""

    __event_name__ = "user.created"

    user_id: int
    email: str = Field(pattern=r"^[^@ ]+@[^@ ]+$")


@payload_schema.register(event_name="user.deleted")
class UserDeleted(BaseModel):
    """Registered schema: ``dispatch("user.deleted", {...})`` is validated at the call site."""

    user_id: int


# -- dependencies used by handlers, exactly as in FastAPI ---------------------------------------------------------


class AuditStore:
    def __init__(self) -> None:
        self.entries = AUDIT_LOG

    def add(self, **entry: object) -> None:
        self.entries.append({"at": datetime.now(timezone.utc).isoformat(), **entry})


async def audit_store() -> AsyncIterator[AuditStore]:
    store = AuditStore()
    yield store  # a `yield` dependency: teardown would run after the handler (close a session, commit, ...)


def mailer_settings() -> dict[str, str]:
    return {"sender": "hello@example.com"}


# -- handlers ----------------------------------------------------------------------------------------------------


@local_handler.register(event_name="user.*")
async def audit(event: Event, store: Annotated[AuditStore, Depends(audit_store)]) -> None:
    name, payload = event
    store.add(event=name, payload=payload)


@local_handler.register(event_name="user.created")
def send_welcome_mail(event: Event, settings: dict[str, str] = Depends(mailer_settings)) -> None:
    # A sync handler: it runs in a worker thread, so blocking I/O here does not stall the server.
    _, payload = event
    log.info("mail from %s to %s: welcome!", settings["sender"], payload["email"])
    dispatch("mail.sent", {"to": payload["email"]})  # event chaining


# -- database: the users and the outbox of their events, in one SQLite file ----------------------------------------

DATABASE = os.environ.get("EXAMPLE_DB") or os.path.join(tempfile.mkdtemp(prefix="fastapi-events-example-"), "app.db")
engine = create_async_engine(f"sqlite+aiosqlite:///{DATABASE}")
Session = async_sessionmaker(engine, expire_on_commit=False)
metadata = sa.MetaData()
users = sa.Table(
    "users", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("email", sa.String, nullable=False)
)
# metadata=: the outbox table is part of the app's schema (Alembic autogenerates it along with `users`).
outbox = SQLAlchemyOutbox(engine, metadata=metadata)
# An example's shortcut for migrations: create both tables at import, before any request (or lifespan) runs.
_schema_engine = sa.create_engine(f"sqlite:///{DATABASE}")
metadata.create_all(_schema_engine)
_schema_engine.dispose()


async def get_session() -> AsyncIterator[AsyncSession]:
    async with Session() as session:
        yield session


# -- app ---------------------------------------------------------------------------------------------------------


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(30)
            dispatch("service.heartbeat", {"audit_entries": len(AUDIT_LOG)})

    task = asyncio.create_task(heartbeat())  # dispatches outside any request: no middleware_id needed here
    yield
    task.cancel()


app = FastAPI(title="fastapi-events example", lifespan=lifespan)
app.add_middleware(EventHandlerASGIMiddleware, handlers=[local_handler, EchoHandler()], outbox=outbox)
app.mount("/_events", Inspector().app)  # the event inspector: http://127.0.0.1:8000/_events/ (loopback only)


class NewUser(BaseModel):
    email: str = Field(pattern=r"^[^@ ]+@[^@ ]+$")


@app.post("/users", status_code=201)
async def create_user(body: NewUser, session: AsyncSession = Depends(get_session)) -> dict[str, object]:
    user_id = (await session.execute(users.insert().values(email=body.email).returning(users.c.id))).scalar_one()
    # Written with the user, in the same transaction; handled after the commit (and never if it rolls back).
    dispatch(UserCreated(user_id=user_id, email=body.email), session=session)
    await session.commit()
    return {"id": user_id, "email": body.email}


# response_model=None: older FastAPI releases (0.110, our minimum) read the postponed `-> None` as a body
# model and refuse it on a 204.
@app.delete("/users/{user_id}", status_code=204, response_model=None)
async def delete_user(user_id: int) -> None:
    dispatch("user.deleted", {"user_id": user_id})


@app.get("/audit")
async def audit_log() -> list[dict[str, object]]:
    return AUDIT_LOG
