"""``WebhookReceiver(inbox=Inbox(), engine=...)``: an id accepted once is never dispatched again, even by a new
receiver (a restart, another replica) - the record lives in the database, SQLite or PostgreSQL, reached through
an ``AsyncEngine`` or a sync ``Engine`` (whose calls run in threads of the receiver's own)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from starlette.applications import Starlette
from starlette.testclient import TestClient

from fastapi_events.errors import ConfigurationError
from fastapi_events.outbox import Inbox
from fastapi_events.webhooks import WebhookReceiver
from tests.webhooks._endpoint import SECRET, ThreadServer, receiving_app
from tests.webhooks._send import wait_until
from tests.webhooks.test_receiver import signed

BODY = json.dumps({"type": "invoice.paid", "timestamp": "2026-01-01T00:00:00Z", "data": {"n": 1}}).encode()


@dataclass
class InboxDatabase:
    url: str  # the URL the receiver's engine is made from
    sync_url: str  # the same database, for the test's own checks
    is_async: bool
    engines: list[Any]

    def engine(self) -> Any:
        # NullPool: nothing is left open once a receiver is done with it.
        made = create_async_engine(self.url, poolclass=NullPool) if self.is_async else sa.create_engine(self.url)
        self.engines.append(made)
        return made

    def recorded(self) -> list[str]:
        engine = sa.create_engine(self.sync_url, poolclass=NullPool)
        with engine.connect() as connection:
            return sorted(row[0] for row in connection.execute(sa.text("SELECT event_id FROM fastapi_events_inbox")))


@pytest.fixture(params=["sqlite-async", "sqlite-sync", "postgresql-async", "postgresql-sync"])
def inbox_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InboxDatabase]:
    kind, mode = request.param.split("-")
    if kind == "sqlite":
        path = tmp_path / "inbox.db"
        driver = "sqlite+aiosqlite" if mode == "async" else "sqlite"
        db = InboxDatabase(f"{driver}:///{path}", f"sqlite:///{path}", mode == "async", [])
    else:
        request.applymarker(pytest.mark.servers)
        pg_url: Callable[[str], str] = request.getfixturevalue("pg_url")
        db = InboxDatabase(pg_url("asyncpg" if mode == "async" else "psycopg"), pg_url("psycopg"), mode == "async", [])
    setup = sa.create_engine(db.sync_url, poolclass=NullPool)
    Inbox().table.create(setup)
    yield db
    for engine in db.engines:
        if db.is_async:
            engine.sync_engine.dispose()
        else:
            engine.dispose()


def inbox_app(db: InboxDatabase) -> tuple[Starlette, list[tuple[str, Any]]]:
    return receiving_app(WebhookReceiver(secret=SECRET, inbox=Inbox(), engine=db.engine()))


def test_a_redelivery_to_a_new_receiver_is_not_dispatched_again(inbox_database: InboxDatabase) -> None:
    app, first = inbox_app(inbox_database)
    with TestClient(app) as client:
        assert client.post("/webhooks", content=BODY, headers=signed(BODY, "msg_a")).status_code == 204
    app, second = inbox_app(inbox_database)  # a restarted process: its memory of ids is empty
    with TestClient(app) as client:
        assert client.post("/webhooks", content=BODY, headers=signed(BODY, "msg_a")).status_code == 204
        assert client.post("/webhooks", content=BODY, headers=signed(BODY, "msg_b")).status_code == 204
    assert first == [("invoice.paid", {"n": 1})]
    assert second == [("invoice.paid", {"n": 1})]  # msg_b only
    assert [event.event_id for event in first + second] == ["msg_a", "msg_b"]  # type: ignore[attr-defined]
    assert inbox_database.recorded() == ["msg_a", "msg_b"]


def test_an_id_longer_than_the_inbox_column_is_recorded_by_its_hash(inbox_database: InboxDatabase) -> None:
    long_id = "msg_" + "x" * 200  # the inbox's event_id column holds 64 characters (PostgreSQL enforces it)
    seen = []
    for _ in range(2):  # two receivers, as after a restart
        app, received = inbox_app(inbox_database)
        with TestClient(app) as client:
            assert client.post("/webhooks", content=BODY, headers=signed(BODY, long_id)).status_code == 204
        seen.append([event.event_id for event in received])  # type: ignore[attr-defined]
    assert seen == [[long_id], []]
    assert inbox_database.recorded() == [hashlib.sha256(long_id.encode()).hexdigest()]


def test_a_delivery_that_cannot_be_dispatched_leaves_no_record(inbox_database: InboxDatabase) -> None:
    """Without the middleware the receiver answers 500 - and records nothing, so the retried delivery is
    dispatched once the app is fixed."""
    app = Starlette()
    app.mount("/webhooks", WebhookReceiver(secret=SECRET, inbox=Inbox(), engine=inbox_database.engine()).app)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/webhooks", content=BODY, headers=signed(BODY, "msg_a")).status_code == 500
    assert inbox_database.recorded() == []
    app, received = inbox_app(inbox_database)
    with TestClient(app) as client:
        assert client.post("/webhooks", content=BODY, headers=signed(BODY, "msg_a")).status_code == 204
    assert received == [("invoice.paid", {"n": 1})]


def test_inbox_needs_an_engine() -> None:
    with pytest.raises(ConfigurationError, match="together"):
        WebhookReceiver(secret=SECRET, inbox=Inbox())
    with pytest.raises(ConfigurationError, match="Engine or AsyncEngine"):
        WebhookReceiver(secret=SECRET, inbox=Inbox(), engine="sqlite://")  # type: ignore[arg-type]


@pytest.mark.usefixtures("clean_schema_registry")
def test_a_payload_the_schema_refuses_is_400_and_leaves_no_record(inbox_database: InboxDatabase) -> None:
    from pydantic import BaseModel

    from fastapi_events.registry.payload_schema import registry

    @registry.register(event_name="invoice.paid")
    class InvoicePaid(BaseModel):
        n: int

    bad = json.dumps({"type": "invoice.paid", "data": {"n": "not a number"}}).encode()
    app, received = inbox_app(inbox_database)
    with TestClient(app) as client:
        reply = client.post("/webhooks", content=bad, headers=signed(bad, "msg_a"))
        assert reply.status_code == 400
        assert "invoice.paid" in reply.json()["detail"]
        assert inbox_database.recorded() == []
        # The sender fixes the payload and sends it again under the same id: accepted, validated, dispatched.
        assert client.post("/webhooks", content=BODY, headers=signed(BODY, "msg_a")).status_code == 204
    assert received == [("invoice.paid", {"n": 1})]
    assert inbox_database.recorded() == ["msg_a"]


@pytest.mark.servers
@pytest.mark.anyio
async def test_concurrent_redeliveries_are_dispatched_once(
    inbox_database: InboxDatabase, serve: Callable[..., ThreadServer]
) -> None:
    """Each id POSTed three times at once, to a receiver under uvicorn: the database decides which one dispatches."""
    app, received = inbox_app(inbox_database)
    url = serve(app).url + "/webhooks"
    bodies = {f"msg_{n}": json.dumps({"type": "invoice.paid", "data": {"n": n}}).encode() for n in range(10)}
    async with httpx.AsyncClient(timeout=60) as client:
        replies = await asyncio.gather(
            *(
                client.post(url, content=body, headers=signed(body, message_id))
                for _ in range(3)
                for message_id, body in bodies.items()
            )
        )
    assert [reply.status_code for reply in replies] == [204] * 30
    await wait_until(lambda: len(received) >= 10, 30)
    await asyncio.sleep(0.5)
    assert sorted(event.event_id for event in received) == sorted(bodies)  # type: ignore[attr-defined]
    assert inbox_database.recorded() == sorted(bodies)
