"""Outbox events through a real forwarder (Redis Streams): broker outages keep the rows; the event id travels."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from fastapi_events.handlers.redis import RedisStreamForwardHandler
from tests._servers import RedisServer, wait_for
from tests.outbox._app import Recorder, count_rows, create_orders, make_app


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
