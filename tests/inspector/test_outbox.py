"""Outbox dead letters in the inspector: listed with their handler and reason, replayed and purged by POST;
scheduled events listed and cancelled."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from fastapi_events.delivery import RetryPolicy
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.inspector import Inspector
from tests._servers import wait_for
from tests.outbox._app import Database, Recorder, count_rows, create_orders, make_app
from tests.outbox._delayed import Clock
from tests.outbox._delayed import make_app as make_delayed_app

from .conftest import page_token

FAST_RETRY = RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.05)


def test_outbox_dead_letters_are_listed_replayed_and_purged(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'app.db'}", is_async=False)
    check = database.sync_engine()
    create_orders(check)
    broken = Recorder(failures=1000)
    app, outbox = make_app(database.engine(), [broken], retry=FAST_RETRY, poll_interval=0.05)
    inspector = Inspector(authorize=lambda connection: True)  # TestClient's peer is not a loopback address
    app.mount("/_events", inspector.app)
    try:
        with TestClient(app) as client:
            client.post("/orders/1", params={"events": 2})
            wait_for(lambda: count_rows(check, where="WHERE state = 'dead'") == 2, timeout=20)
            listing = client.get("/_events/api/dead-letters").json()
            # Other outboxes of this process (the example service's, other tests') may be listed too.
            (source,) = [s for s in listing["sources"] if s["kind"] == "outbox" and s["label"] == repr(outbox)]
            assert source["total"] == 2
            assert source["label"] == repr(outbox)
            items = sorted(source["items"], key=lambda d: d["payload"])
            assert [d["event"] for d in items] == ["order.placed", "order.placed"]
            assert items[0]["payload"] == '{"order_id": 1, "i": 0}'
            assert items[0]["reason"].startswith(f"{broken!r}: ")
            assert "failing attempt 2" in items[0]["reason"]
            assert items[0]["attempts"] == 2
            relays = client.get("/_events/api/handlers").json()["outboxes"]
            assert {"outbox": repr(outbox), "table": "fastapi_events_outbox", "relay": True} in relays

            token = page_token(client.get("/_events/").text)
            headers = {"x-inspector-token": token, "origin": "http://testserver"}
            broken.failures = 0
            replay = {"source": source["id"], "ids": [items[0]["id"]]}
            assert client.post("/_events/api/dead-letters/replay", json=replay, headers=headers).json() == {
                "replayed": 1,
                "skipped": [],
            }
            wait_for(lambda: len(broken.events) == 1, timeout=20)
            assert broken.payloads() == [{"order_id": 1, "i": 0}]
            purge = {"source": source["id"], "ids": [items[1]["id"]]}
            assert client.post("/_events/api/dead-letters/purge", json=purge, headers=headers).json() == {"purged": 1}
            after: Any = client.get("/_events/api/dead-letters").json()["sources"]
            assert [s["total"] for s in after if s["kind"] == "outbox" and s["label"] == repr(outbox)] == [0]
        wait_for(lambda: count_rows(check) == 0, timeout=10)
        assert len(broken.events) == 1  # the purged one was never delivered
    finally:
        inspector.recorder.close()
        check.dispose()


def test_an_event_dispatched_through_the_outbox_shows_the_handlers_that_ran(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'app.db'}", is_async=False)
    check = database.sync_engine()
    create_orders(check)
    local = LocalHandler()
    seen: list[Any] = []

    @local.register(event_name="order.*")
    def fulfil(event: Any) -> None:
        seen.append(event[1])

    app, _ = make_app(database.engine(), [local], poll_interval=0.05)
    inspector = Inspector(authorize=lambda connection: True)
    app.mount("/_events", inspector.app)
    try:
        with TestClient(app) as client:
            client.get("/_events/api/events")
            client.post("/orders/1", params={"events": 2})
            wait_for(lambda: len(seen) == 2, timeout=20)
            events = client.get("/_events/api/events").json()["events"]
    finally:
        inspector.recorder.close()
        check.dispose()
    # The handlers get a copy of each event made after the commit; the page still shows one row per dispatch.
    assert [(e["name"], e["payload"], e["outcome"]) for e in events] == [
        ("order.placed", '{"order_id": 1, "i": 0}', "ok"),
        ("order.placed", '{"order_id": 1, "i": 1}', "ok"),
    ]
    assert all([run["handler"].rsplit(".", 1)[1] for run in e["handlers"]] == ["fulfil"] for e in events)


def test_scheduled_events_are_listed_and_cancelled_by_a_protected_post(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    clock = Clock()
    app, outbox = make_delayed_app(engine, [clock], poll_interval=60)
    inspector = Inspector(authorize=lambda connection: True)
    app.mount("/_events", inspector.app)
    events = [
        {"name": "invoice.reminder", "delay": 2.0, "id": "reminder-7", "payload": {"invoice": 7}},
        {"name": "reservation.expire", "delay": 2.5, "id": "hold-3", "payload": {"reservation": 3}},
    ]
    try:
        with TestClient(app) as client:
            assert client.post("/schedule", json={"events": events}).status_code == 200
            listing = client.get("/_events/api/scheduled").json()
            (source,) = [s for s in listing["sources"] if s["label"] == repr(outbox)]
            assert [(e["id"], e["event"]) for e in source["items"]] == [
                ("reminder-7", "invoice.reminder"),
                ("hold-3", "reservation.expire"),
            ]
            assert json.loads(source["items"][0]["payload"])["invoice"] == 7
            assert source["items"][0]["due"] > source["items"][0]["dispatched"]

            cancel = {"source": source["id"], "ids": ["reminder-7"]}
            # Changing state needs the page's token and its origin, as replay and purge do.
            assert client.post("/_events/api/scheduled/cancel", json=cancel).status_code == 403
            token = page_token(client.get("/_events/").text)
            foreign = {"x-inspector-token": token, "origin": "http://evil.example"}
            assert client.post("/_events/api/scheduled/cancel", json=cancel, headers=foreign).status_code == 403
            headers = {"x-inspector-token": token, "origin": "http://testserver"}
            assert client.post("/_events/api/scheduled/cancel", json=cancel, headers=headers).json() == {"cancelled": 1}
            after = client.get("/_events/api/scheduled").json()["sources"]
            assert [[e["id"] for e in s["items"]] for s in after if s["id"] == source["id"]] == [["hold-3"]]
            wait_for(lambda: len(clock.handled) == 1, timeout=30, message="the event not cancelled")
            time.sleep(0.3)
        assert clock.ids() == ["hold-3"]
    finally:
        inspector.recorder.stop()
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
    else:
        url = request.getfixturevalue("pg_url")("psycopg")
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()


def test_a_bad_cancel_request_is_refused_with_a_4xx_naming_the_problem_and_cancels_nothing(
    engine: sa.Engine,
) -> None:
    clock = Clock()
    app, outbox = make_delayed_app(engine, [clock], poll_interval=60)
    inspector = Inspector(authorize=lambda connection: True)
    app.mount("/_events", inspector.app)
    try:
        with TestClient(app) as client:
            scheduled = [{"name": "invoice.reminder", "delay": 600, "id": f"reminder-{i}"} for i in range(2)]
            assert client.post("/schedule", json={"events": scheduled}).status_code == 200
            (source,) = [
                s for s in client.get("/_events/api/scheduled").json()["sources"] if s["label"] == repr(outbox)
            ]
            token = page_token(client.get("/_events/").text)
            headers = {"x-inspector-token": token, "origin": "http://testserver"}

            def cancel(body: Any, **extra: str) -> tuple[int, str]:
                content = body if isinstance(body, str) else json.dumps(body)
                response = client.post("/_events/api/scheduled/cancel", content=content, headers={**headers, **extra})
                return response.status_code, response.json()["error"]

            refused = {
                "an id over 64 characters": ({"source": source["id"], "ids": ["x" * 65]}, 400, "at most 64"),
                "a huge id": ({"source": source["id"], "ids": ["x" * 100_000]}, 400, "at most 64"),
                "an empty id": ({"source": source["id"], "ids": ["reminder-0", ""]}, 400, "non-empty"),
                "a NUL in an id": ({"source": source["id"], "ids": ["reminder-\x000"]}, 400, "NUL"),
                "a lone surrogate": ({"source": source["id"], "ids": ["\ud800"]}, 400, "surrogates"),
                "no ids": ({"source": source["id"], "ids": []}, 400, "give 1 to 1000 ids"),
                "too many ids": ({"source": source["id"], "ids": ["a"] * 1001}, 400, "give 1 to 1000 ids"),
                "an id not a string": ({"source": source["id"], "ids": [7]}, 400, "expected"),
                "ids not a list": ({"source": source["id"], "ids": "reminder-0"}, 400, "expected"),
                "no source": ({"ids": ["reminder-0"]}, 400, "expected"),
                "an unknown outbox": ({"source": "outbox:nowhere", "ids": ["reminder-0"]}, 404, "no outbox"),
                "not JSON": ("reminder-0", 400, "not JSON"),
                "JSON nested too deep": ("[" * 200_000 + "]" * 200_000, 400, "not JSON"),
                "a body over 1 MiB": (json.dumps({"source": source["id"], "ids": ["x" * (1 << 20)]}), 413, "too large"),
            }
            for case, (body, status, says) in refused.items():
                got, error = cancel(body)
                assert (case, got) == (case, status), error
                assert says in error, case
            assert cancel({"source": source["id"], "ids": ["reminder-0"]}, origin="http://evil.example")[0] == 403
            # Nothing was cancelled by any of them; a good request still is.
            listed = client.get("/_events/api/scheduled").json()["sources"]
            assert [[e["id"] for e in s["items"]] for s in listed if s["id"] == source["id"]] == [
                ["reminder-0", "reminder-1"]
            ]
            good = client.post(
                "/_events/api/scheduled/cancel", json={"source": source["id"], "ids": ["reminder-0"]}, headers=headers
            )
            assert good.json() == {"cancelled": 1}
    finally:
        inspector.recorder.stop()
