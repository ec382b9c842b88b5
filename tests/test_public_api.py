"""What ``from fastapi_events import ...`` offers, and what importing it costs."""

from __future__ import annotations

import subprocess
import sys

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
