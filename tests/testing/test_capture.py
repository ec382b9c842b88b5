from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.testing import capture_events, disabled_dispatch, handled_events
from tests.apps import app_with


def make_app():
    handler = LocalHandler()
    handled: list[str] = []

    @handler.register(event_name="user.*")
    async def on_user(event) -> None:
        handled.append(event[0])
        if event[0] == "user.created":
            dispatch("user.welcomed", {"id": event[1]["id"]})

    app = app_with(handler)

    @app.post("/users")
    def create_user() -> dict[str, int]:
        dispatch("user.created", {"id": 1})
        return {"id": 1}

    return app, handled


def test_capture_events_records_requests_and_chained_events_in_order() -> None:
    app, handled = make_app()
    with capture_events() as events, TestClient(app) as client:
        client.post("/users")
    assert events == [("user.created", {"id": 1}), ("user.welcomed", {"id": 1})]
    assert events.names == ["user.created", "user.welcomed"]
    assert events.payloads("user.welcomed") == [{"id": 1}]
    assert handled == ["user.created", "user.welcomed"], "handlers still run while capturing"


def test_capture_lets_unit_tests_call_code_that_dispatches_without_an_app() -> None:
    def service() -> None:
        dispatch("order.paid", {"total": 3})

    with capture_events() as events:
        service()
    assert events == [("order.paid", {"total": 3})]
    with pytest.raises(LookupError):
        service()


@pytest.mark.anyio
async def test_async_capture_and_handled_events() -> None:
    async with capture_events() as events:
        dispatch("a")
    assert events.names == ["a"]
    async with handled_events() as events:
        dispatch("b")
    assert events.names == ["b"]


def test_disabled_dispatch_suppresses_and_restores() -> None:
    with capture_events() as events:
        with disabled_dispatch():
            dispatch("hidden")
        dispatch("visible")
    assert events.names == ["visible"]


def test_pytest_fixture_from_the_plugin(captured_events) -> None:
    app, _ = make_app()
    TestClient(app).post("/users")
    assert captured_events.names == ["user.created", "user.welcomed"]


def test_a_dispatch_that_raises_is_not_captured() -> None:
    with capture_events() as events:
        with pytest.raises(LookupError):
            dispatch("to-nowhere", middleware_id=123_456_789)
        dispatch("recorded")
    assert events.names == ["recorded"]
