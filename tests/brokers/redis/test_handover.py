"""A loop per request (``TestClient`` without ``with``): every request's events are in the stream when it returns."""

from __future__ import annotations

import uuid
from typing import Any

import redis
from starlette.testclient import TestClient

from fastapi_events.handlers.redis import RedisStreamForwardHandler
from tests.delivery._app import make_app


def test_each_request_on_its_own_loop_has_its_events_in_the_stream_when_it_returns(redis_server: Any) -> None:
    stream = f"events-{uuid.uuid4().hex[:8]}"
    handler = RedisStreamForwardHandler(stream, redis_server.url)
    client = TestClient(make_app(handler))  # the client of the first loop is unusable on the next ones
    reader = redis.Redis.from_url(redis_server.url)
    try:
        for request in range(1, 4):
            assert client.post("/events/tick", json=list(range(50))).status_code == 200
            assert reader.xlen(stream) == request * 50
        stats = handler.stats
        assert (stats.delivered, stats.retried, stats.dropped) == (150, 0, 0)
    finally:
        reader.close()
