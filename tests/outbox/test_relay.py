"""The relay: what no process finished is delivered; per-handler progress, retries, dead letters, key order."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from fastapi_events.delivery import RetryPolicy
from fastapi_events.handlers.local import LocalHandler
from tests._servers import wait_for
from tests.outbox._app import Database, Recorder, count_rows, make_app

FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05)


def write_only(database: Database, orders_: range, **options: Any) -> None:
    """An app with ``relay=False`` commits orders and their events; nothing delivers them here."""
    recorder = Recorder()
    app, _ = make_app(database.engine(), [recorder], relay=False, **options)
    with TestClient(app) as client:
        for n in orders_:
            assert client.post(f"/orders/{n}").status_code == 200
    assert recorder.events == []


def test_a_relay_delivers_what_another_process_committed(database: Database) -> None:
    write_only(database, range(1, 6))
    check = database.sync_engine()
    assert count_rows(check) == 5
    recorder = Recorder()
    app, _ = make_app(database.engine(), [recorder], poll_interval=0.1)
    with TestClient(app):
        wait_for(lambda: len(recorder.events) == 5, timeout=20)
        wait_for(lambda: count_rows(check) == 0, timeout=10)
    assert sorted(p["order_id"] for p in recorder.payloads()) == [1, 2, 3, 4, 5]


def test_a_handler_that_succeeded_is_not_called_again_when_another_fails(database: Database) -> None:
    flaky, steady = Recorder(failures=2), Recorder()
    local = LocalHandler()
    calls: list[int] = []

    @local.register(event_name="order.*")
    def on_order(event: Any) -> None:
        calls.append(event[1]["order_id"])

    app, _ = make_app(database.engine(), [flaky, steady, local], retry=FAST_RETRY, poll_interval=0.05)
    with TestClient(app) as client:
        client.post("/orders/1")
        wait_for(lambda: len(flaky.events) == 1, timeout=20)
        wait_for(lambda: count_rows(database.sync_engine()) == 0, timeout=10)
    assert list(flaky.calls.values()) == [3]
    assert len(steady.events) == 1
    assert list(steady.calls.values()) == [1]
    assert calls == [1]
    assert [e.attempt for e in flaky.events] == [3]  # the attempt number handlers see (EventMeta.attempt)


def test_dead_letters_are_listed_replayed_and_purged(database: Database) -> None:
    broken, steady = Recorder(failures=1000), Recorder()
    app, outbox = make_app(database.engine(), [broken, steady], retry=FAST_RETRY, poll_interval=0.05)
    with TestClient(app) as client:
        client.post("/orders/1", params={"events": 2})
        check = database.sync_engine()
        wait_for(lambda: count_rows(check, where="WHERE state = 'dead'") == 2, timeout=20)
        dead = client.portal.call(outbox.dead_letters)
        assert len(dead) == 2
        assert {d.event_name for d in dead} == {"order.placed"}
        assert sorted(d.payload["i"] for d in dead) == [0, 1]
        assert all(d.handler == repr(broken) and d.attempts == 3 for d in dead)
        assert all("failing attempt 3" in d.reason and d.time > 0 for d in dead)
        assert len(steady.events) == 2

        broken.failures = 0
        assert client.portal.call(outbox.replay, [dead[0].id]) == 1
        wait_for(lambda: len(broken.events) == 1, timeout=20)
        assert broken.events[0].event_id == dead[0].id
        assert len(steady.events) == 2  # it had them already
        assert client.portal.call(outbox.purge, None) == 1
        assert client.portal.call(outbox.dead_letters) == []
    wait_for(lambda: count_rows(check) == 0, timeout=10)


def test_events_with_the_same_key_reach_handlers_in_commit_order_one_at_a_time(database: Database) -> None:
    def key(event: Any) -> str:
        return f"order-{event[1]['order_id'] % 2}"

    write_only(database, range(1, 21), key=key)
    local = LocalHandler()
    running: dict[str, int] = {}
    order: dict[str, list[int]] = {}
    overlaps: list[str] = []

    @local.register(event_name="order.*")
    async def slow(event: Any) -> None:
        import asyncio

        k = key(event)
        running[k] = running.get(k, 0) + 1
        if running[k] > 1:
            overlaps.append(k)
        await asyncio.sleep(0.005)
        order.setdefault(k, []).append(event[1]["order_id"])
        running[k] -= 1

    # Two relays (two outboxes, as two processes would have) against the same table.
    app1, _ = make_app(database.engine(), [local], key=key, poll_interval=0.05)
    app2, _ = make_app(database.engine(), [local], key=key, poll_interval=0.05)
    with TestClient(app1), TestClient(app2):
        wait_for(lambda: sum(len(v) for v in order.values()) == 20, timeout=30)
    assert order == {"order-0": list(range(2, 21, 2)), "order-1": list(range(1, 21, 2))}
    assert overlaps == []


def test_finished_rows_are_kept_for_the_retention_period(tmp_path: Any) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    from tests.outbox._app import create_orders

    create_orders(engine)
    recorder = Recorder()
    app, _ = make_app(engine, [recorder], retention=0.5, poll_interval=0.05)
    with TestClient(app) as client:
        client.post("/orders/1")
        assert count_rows(engine, where="WHERE state = 'done'") == 1
        started = time.monotonic()
        wait_for(lambda: count_rows(engine) == 0, timeout=20)
        assert time.monotonic() - started >= 0.3


@pytest.fixture(autouse=True)
def _quiet_failures(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("CRITICAL", logger="fastapi_events")


def test_a_commit_wakes_relays_of_other_processes_through_listen_notify(pg_url: Any) -> None:
    database = Database(pg_url("asyncpg"), is_async=True)
    from tests.outbox._app import create_orders

    create_orders(database.sync_engine())
    recorder = Recorder()
    # Polling every 60 s: only a NOTIFY can bring the event over within the test's few seconds.
    app, _ = make_app(database.engine(), [recorder], poll_interval=60)
    with TestClient(app):
        time.sleep(1)  # the relay has made its first claim and is listening
        write_only(database, range(1, 4))
        wait_for(lambda: len(recorder.events) == 3, timeout=20, message="3 events woken by NOTIFY")
    assert sorted(p["order_id"] for p in recorder.payloads()) == [1, 2, 3]


def test_processes_starting_at_once_on_a_fresh_database_all_start(pg_url: Any) -> None:
    """Several relays (or app replicas) deployed together each create the missing table: none may fail."""
    import asyncio
    import threading

    from fastapi_events.outbox import SQLAlchemyOutbox

    url = pg_url("psycopg")
    outboxes = [SQLAlchemyOutbox(sa.create_engine(url), relay=False) for _ in range(8)]
    barrier = threading.Barrier(len(outboxes))
    errors: list[BaseException] = []

    def start(outbox: SQLAlchemyOutbox) -> None:
        barrier.wait()
        try:
            asyncio.run(outbox.start())
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(o,)) for o in outboxes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with sa.create_engine(url).connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM fastapi_events_outbox").scalar_one() == 0
