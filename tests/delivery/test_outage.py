"""A forwarder that cannot open its client because of its own settings says so at ERROR, and keeps the events."""

from __future__ import annotations

import logging
import time

import pytest
from starlette.testclient import TestClient

from fastapi_events.handlers.gcp import GoogleCloudSimplePubSubHandler
from tests.delivery._app import make_app


def test_a_client_setting_the_sdk_refuses_is_an_error_in_the_log_and_loses_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = GoogleCloudSimplePubSubHandler(
        "my-project", "orders", client_kwargs={"no_such_option": 1}, outage_log_interval=0.2
    )
    client = TestClient(make_app(handler))
    started = time.monotonic()
    assert client.post("/events/order.created", json=[1, 2]).status_code == 200
    assert time.monotonic() - started < 5.0  # the request is not held by a client that cannot be built
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("configuration rejected" in m and "no_such_option" in m for m in errors), errors
    assert handler.stats.queued == 2
    assert handler.stats.dropped == 0
