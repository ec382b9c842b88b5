"""What ``from fastapi_events import ...`` offers, and what importing it costs."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import fastapi_events
from fastapi_events.delivery import DeliveryOptions, ForwardHandler, RetryPolicy
from fastapi_events.handlers.aws import SQSForwardHandler
from fastapi_events.handlers.gcp import GoogleCloudSimplePubSubHandler
from fastapi_events.handlers.kafka import KafkaForwardHandler
from fastapi_events.handlers.redis import RedisStreamForwardHandler

SDKS = ("boto3", "botocore", "google.cloud.pubsub_v1", "grpc", "confluent_kafka", "redis")


def test_importing_the_package_and_the_consumer_imports_no_broker_sdk() -> None:
    script = (
        "import sys, fastapi_events, fastapi_events.consumer, fastapi_events.delivery, fastapi_events.brokers.sqs, "
        "fastapi_events.brokers.pubsub, fastapi_events.brokers.kafka, fastapi_events.brokers.redis\n"
        "from fastapi_events import RetryPolicy, DeliveryOptions\n"
        f"print(sorted(m for m in {SDKS!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_forwarders_and_delivery_names_are_importable_from_the_top_package() -> None:
    assert fastapi_events.SQSForwardHandler is SQSForwardHandler
    assert fastapi_events.GoogleCloudSimplePubSubHandler is GoogleCloudSimplePubSubHandler
    assert fastapi_events.KafkaForwardHandler is KafkaForwardHandler
    assert fastapi_events.RedisStreamForwardHandler is RedisStreamForwardHandler
    assert fastapi_events.RetryPolicy is RetryPolicy
    assert fastapi_events.DeliveryOptions is DeliveryOptions
    assert fastapi_events.ForwardHandler is ForwardHandler
    for name in ("SQSForwardHandler", "KafkaForwardHandler", "RetryPolicy", "DeliveryOptions"):
        assert name in fastapi_events.__all__


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        fastapi_events.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


def test_a_custom_handler_reports_a_failure_and_the_other_events_still_flow(caplog: pytest.LogCaptureFixture) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    handled: list[str] = []
    hooked: list[tuple[str, str]] = []

    class Picky(fastapi_events.BaseEventHandler):
        async def handle_many(self, events: Any) -> None:
            for event in events:
                if event[0] == "bad":
                    fastapi_events.report_failure(event, self, ValueError("no bad events"))
                else:
                    handled.append(event[0])

    async def endpoint(request: Any) -> PlainTextResponse:
        for name in ("a", "bad", "b"):
            fastapi_events.dispatch(name)
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", endpoint)])
    app.add_middleware(
        fastapi_events.EventHandlerASGIMiddleware,
        handlers=[Picky()],
        on_error=lambda event, handler, exc: hooked.append((event[0], handler)),
    )
    with TestClient(app) as client, caplog.at_level("ERROR", logger="fastapi_events"):
        client.get("/")
    assert handled == ["a", "b"]
    assert [(name, handler.rsplit(".", 1)[-1]) for name, handler in hooked] == [("bad", "Picky")]
    assert any("'bad'" in record.getMessage() and "no bad events" in record.getMessage() for record in caplog.records)
