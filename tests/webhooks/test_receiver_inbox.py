"""``WebhookReceiver(inbox=Inbox(), engine=...)``: an id accepted once is never dispatched again, even by a new
receiver (a restart, another replica) - the record lives in the database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from starlette.applications import Starlette
from starlette.testclient import TestClient

from fastapi_events.errors import ConfigurationError
from fastapi_events.outbox import Inbox
from fastapi_events.webhooks import WebhookReceiver
from tests.webhooks._endpoint import SECRET, receiving_app
from tests.webhooks.test_receiver import signed

BODY = json.dumps({"type": "invoice.paid", "timestamp": "2026-01-01T00:00:00Z", "data": {"n": 1}}).encode()


def inbox_app(database: str) -> tuple[Starlette, list[tuple[str, Any]]]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{database}", poolclass=NullPool)  # nothing left open
    return receiving_app(WebhookReceiver(secret=SECRET, inbox=Inbox(), engine=engine))


def test_a_redelivery_to_a_new_receiver_is_not_dispatched_again(tmp_path: Path) -> None:
    database = str(tmp_path / "inbox.db")
    Inbox().table.create(sa.create_engine(f"sqlite:///{database}"))
    app, first = inbox_app(database)
    with TestClient(app) as client:
        assert client.post("/webhooks", content=BODY, headers=signed(BODY, "msg_a")).status_code == 204
    app, second = inbox_app(database)  # a restarted process: its memory of ids is empty
    with TestClient(app) as client:
        assert client.post("/webhooks", content=BODY, headers=signed(BODY, "msg_a")).status_code == 204
        assert client.post("/webhooks", content=BODY, headers=signed(BODY, "msg_b")).status_code == 204
    assert first == [("invoice.paid", {"n": 1})]
    assert second == [("invoice.paid", {"n": 1})]  # msg_b only
    with sa.create_engine(f"sqlite:///{database}").connect() as connection:
        ids = sorted(row[0] for row in connection.execute(sa.text("SELECT event_id FROM fastapi_events_inbox")))
    assert ids == ["msg_a", "msg_b"]


def test_inbox_needs_an_async_engine() -> None:
    with pytest.raises(ConfigurationError, match="together"):
        WebhookReceiver(secret=SECRET, inbox=Inbox())
    with pytest.raises(ConfigurationError, match="AsyncEngine"):
        WebhookReceiver(secret=SECRET, inbox=Inbox(), engine=sa.create_engine("sqlite://"))  # type: ignore[arg-type]
