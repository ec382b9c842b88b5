"""Outbox events through a real forwarder (Redis Streams): broker outages keep the rows; the event id travels;
delayed events go out at their due time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from fastapi_events.handlers.redis import RedisStreamForwardHandler
from tests._servers import RedisServer, wait_for
from tests.outbox._app import Recorder, count_rows, create_orders, make_app
from tests.outbox._delayed import make_app as make_delayed_app


def test_broker_down_rows_stay_and_go_out_once_it_is_back(
    tmp_path: Path, fresh_redis_server: Callable[..., RedisServer]
) -> None:
    server = fresh_redis_server()
    server.kill()  # the broker is down from the start
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    create_orders(engine)
    forwarder = RedisStreamForwardHandler("orders", url=server.url)
    local = Recorder()
    app, _ = make_app(engine, [forwarder, local], poll_interval=0.1)
    with TestClient(app) as client:
        for n in range(1, 11):
            assert client.post(f"/orders/{n}", params={"events": 2}).status_code == 200
        assert len(local.events) == 20  # the other handler is not held up by the outage
        time.sleep(1.5)
        assert count_rows(engine) == 20  # nothing was lost nor given up while the broker was down
        with engine.connect() as conn:
            ids = set(conn.execute(sa.text("SELECT event_id FROM fastapi_events_outbox")).scalars())
        server.start()
        wait_for(lambda: count_rows(engine) == 0, timeout=30, message="rows delivered after the outage")
    entries = redis.Redis.from_url(server.url).xrange("orders")
    assert len(entries) == 20
    # The outbox event id is the message id consumers see (and deduplicate on).
    assert {fields[b"event_id"].decode() for _, fields in entries} == ids
    assert {e.event_id for e in local.events} == ids
    assert len(local.events) == 20  # the local handler had them already: not called again


def test_a_delayed_event_goes_out_at_its_due_time_with_the_callers_id(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    stream = f"reminders-{tmp_path.name}"
    forwarder = RedisStreamForwardHandler(stream, url=redis_server.url)
    app, _ = make_delayed_app(engine, [forwarder], poll_interval=60)
    client = redis.Redis.from_url(redis_server.url)
    event = {"name": "invoice.reminder", "delay": 1.5, "id": "reminder-7", "payload": {"invoice": 7}}
    with TestClient(app) as http:
        assert http.post("/schedule", json={"events": [event]}).status_code == 200
        time.sleep(0.5)
        assert client.xlen(stream) == 0  # not before its due time
        wait_for(lambda: client.xlen(stream) == 1, timeout=30, message="the forwarded event")
        wait_for(lambda: count_rows(engine) == 0, timeout=10, message="the delivery recorded")
    ((entry_id, fields),) = client.xrange(stream)
    assert fields[b"event_id"] == b"reminder-7"  # the message id consumers deduplicate on
    sent_at = int(entry_id.split(b"-")[0]) / 1000  # Redis stamps the entry with its arrival time (ms)
    due = json.loads(fields[b"body"])[1]["due"]
    assert sent_at >= due - 0.001  # ms resolution
    print(f"\nforwarded {(sent_at - due) * 1000:.0f} ms after its due time")
    engine.dispose()
