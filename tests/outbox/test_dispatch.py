"""``dispatch(..., session=)``: written in the session's transaction, handled after commit, never after rollback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import BaseModel

from fastapi_events import (
    ConfigurationError,
    EventHandlerASGIMiddleware,
    EventMeta,
    SerializationError,
    dispatch,
    drain,
    event_meta,
)
from fastapi_events.handlers.local import Depends, LocalHandler
from fastapi_events.outbox import SQLAlchemyOutbox
from fastapi_events.registry.payload_schema import registry
from tests.outbox._app import Database, Recorder, count_rows, make_app, orders


def test_committed_events_reach_every_handler_once_after_the_response(database: Database) -> None:
    recorder = Recorder()
    local = LocalHandler()
    seen: list[tuple[Any, EventMeta]] = []

    @local.register(event_name="order.*")
    async def on_order(event: Any, meta: EventMeta = Depends(event_meta)) -> None:
        seen.append((event[1], meta))

    app, _ = make_app(database.engine(), [recorder, local])
    with TestClient(app) as client:
        assert client.post("/orders/1", params={"events": 3}).status_code == 200
        # Handled within the request's ASGI call, after the response: TestClient returns once they ran.
        assert sorted(p["i"] for p in recorder.payloads()) == [0, 1, 2]
        assert sorted(p["i"] for p, _ in seen) == [0, 1, 2]
    check = database.sync_engine()
    assert count_rows(check) == 0  # every handler has them: the rows are gone
    assert count_rows(check, "orders") == 1
    ids = {meta.id for _, meta in seen}
    assert ids == {event.event_id for event in recorder.events}  # one stable id per event, for every handler
    assert all(meta.name == "order.placed" and meta.attempt == 1 and meta.dispatched_at for _, meta in seen)


@pytest.mark.parametrize("end", ["rollback", "raise", "close"])
def test_events_of_a_transaction_that_did_not_commit_are_never_handled(database: Database, end: str) -> None:
    recorder = Recorder()
    app, _ = make_app(database.engine(), [recorder])
    with TestClient(app, raise_server_exceptions=False) as client:
        client.post("/orders/1", params={"events": 2, "end": end})
        # The same session kind commits fine afterwards: only the committed event goes out.
        assert client.post("/orders/2").status_code == 200
    assert [p["order_id"] for p in recorder.payloads()] == [2]
    check = database.sync_engine()
    assert count_rows(check) == 0
    assert count_rows(check, "orders") == 1


def test_bad_payloads_raise_at_the_call_site_and_write_nothing(tmp_path: Any, clean_schema_registry: None) -> None:
    class Placed(BaseModel):
        order_id: int

    registry.data["order.checked"] = Placed
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    orders.metadata.create_all(engine)
    recorder = Recorder()
    app, _ = make_app(engine, [recorder])
    errors: list[str] = []

    @app.post("/bad")
    def bad() -> None:
        with sa.orm.Session(engine) as session:
            for payload, name in (({"order_id": "x"}, "order.checked"), ({"at": object()}, "order.odd")):
                try:
                    dispatch(name, payload, session=session)
                except Exception as exc:
                    errors.append(type(exc).__name__)
            dispatch("order.checked", {"order_id": 3}, session=session)
            session.commit()

    with TestClient(app) as client:
        client.post("/bad")
    assert errors == ["ValidationError", "SerializationError"]
    assert recorder.events == [("order.checked", {"order_id": 3})]
    assert issubclass(SerializationError, ValueError)


def test_dispatch_with_session_needs_an_outbox(tmp_path: Any) -> None:
    from fastapi import FastAPI

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[Recorder()])
    failures: list[BaseException] = []

    @app.post("/")
    def endpoint() -> None:
        with sa.orm.Session(engine) as session:
            try:
                dispatch("x", {}, session=session)
            except ConfigurationError as exc:
                failures.append(exc)

    with TestClient(app) as client:
        client.post("/")
    assert len(failures) == 1
    assert "outbox" in str(failures[0])


def test_outside_requests_events_are_handled_right_after_commit(database: Database) -> None:
    recorder = Recorder()
    engine = database.engine()
    app, outbox = make_app(engine, [recorder], relay=True)
    middleware_id = 4242

    app.user_middleware.clear()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[recorder], outbox=outbox, middleware_id=middleware_id)

    async def job() -> None:
        if database.is_async:
            from sqlalchemy.ext.asyncio import AsyncSession

            async with AsyncSession(engine) as session:
                dispatch("job.done", {"n": 1}, session=session, middleware_id=middleware_id)
                await session.commit()
        else:

            def work() -> None:
                with sa.orm.Session(engine) as session:
                    dispatch("job.done", {"n": 1}, session=session, middleware_id=middleware_id)
                    session.commit()

            await asyncio.to_thread(work)
        assert await drain(10)

    with TestClient(app) as client:
        client.portal.call(job)
        assert recorder.events == [("job.done", {"n": 1})]
    assert count_rows(database.sync_engine()) == 0


def test_the_table_is_created_at_startup_or_its_absence_is_a_clear_error(tmp_path: Any) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    app, _ = make_app(engine, [Recorder()], create_table=False, table_name="events_out")
    with pytest.raises(ConfigurationError, match="events_out"), TestClient(app):
        pass
    app, outbox = make_app(engine, [Recorder()], table_name="events_out")
    with TestClient(app):
        assert sa.inspect(engine).has_table("events_out")
    assert outbox.table.name == "events_out"


def test_the_table_joins_the_apps_metadata_for_alembic() -> None:
    metadata = sa.MetaData()
    outbox = SQLAlchemyOutbox(sa.create_engine("sqlite://"), metadata=metadata)
    assert metadata.tables["fastapi_events_outbox"] is outbox.table
    assert {"event_id", "event_name", "body", "key", "state"} <= set(outbox.table.c.keys())
