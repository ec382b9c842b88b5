"""A loop per request (``TestClient`` without ``with``): every request's events are acknowledged when it returns."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.testclient import TestClient

from fastapi_events.codec import decode_event
from fastapi_events.handlers.kafka import KafkaForwardHandler
from tests.brokers.kafka.test_forwarder import read_all
from tests.delivery._app import make_app


def test_each_request_on_its_own_loop_has_its_events_acknowledged_when_it_returns(kafka_broker: Any) -> None:
    topic = f"handover-{uuid.uuid4().hex[:8]}"
    handler = KafkaForwardHandler(topic, kafka_broker.bootstrap_servers)
    client = TestClient(make_app(handler))
    for request in range(1, 4):
        assert client.post("/events/tick", json=list(range((request - 1) * 50, request * 50))).status_code == 200
        stats = handler.stats
        assert (stats.delivered, stats.queued) == (request * 50, 0)
    messages = read_all(kafka_broker.bootstrap_servers, topic, 150)
    assert sorted(decode_event(m.value())[1] for m in messages) == list(range(150))
