"""``patch("google.cloud.pubsub_v1.PublisherClient")`` sees every publish when the request returns."""

from __future__ import annotations

from unittest.mock import patch

from starlette.testclient import TestClient

from fastapi_events.handlers.gcp import GoogleCloudSimplePubSubHandler
from tests.delivery._app import make_app


def test_patched_publisher_client_sees_all_publishes_when_the_request_returns() -> None:
    with patch("google.cloud.pubsub_v1.PublisherClient") as client_class:
        handler = GoogleCloudSimplePubSubHandler(project_id="my-project", topic_id="orders")
        client = TestClient(make_app(handler))  # no ``with``: the request's loop is closed when post() returns
        assert client.post("/events/order.created", json=list(range(50))).status_code == 200
        publish = client_class.return_value.publish
        assert publish.call_count == 50
        topics = {call.args[0] for call in publish.call_args_list}
        assert topics == {"projects/my-project/topics/orders"}
        assert client.post("/events/order.created", json=list(range(50))).status_code == 200
        assert publish.call_count == 100
    assert handler.stats.delivered == 100
