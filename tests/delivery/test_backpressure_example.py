"""docs/forwarders.md's example app: its forwarder pushes back and its route works against a real redis-server."""

from __future__ import annotations

import importlib

import redis
from starlette.testclient import TestClient

from tests._servers import RedisServer


def test_the_backpressure_example_app_forwards_to_redis(redis_server: RedisServer) -> None:
    example = importlib.import_module("docs_src.backpressure.app")
    forwarder = example.forwarder
    forwarder.transport.url = redis_server.url  # the example names a local default; the test's server instead
    reader = redis.Redis.from_url(redis_server.url)
    try:
        before = reader.xlen("orders") if reader.exists("orders") else 0
        with TestClient(example.app) as client:
            assert client.post("/orders").json() == {"status": "placed"}
        assert reader.xlen("orders") == before + 1
        assert forwarder.max_queue_size == 10_000
        assert forwarder.stats.dropped == 0
        assert example.given_up == []
    finally:
        reader.close()
