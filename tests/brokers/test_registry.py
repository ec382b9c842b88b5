"""Consumer URLs map to configured sources; mistakes are configuration errors, not crashes later."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from fastapi_events.brokers.kafka import KafkaSource
from fastapi_events.brokers.pubsub import PubSubSource
from fastapi_events.brokers.redis import RedisStreamSource
from fastapi_events.brokers.sqs import SQSSource
from fastapi_events.consumer import source_from_url
from fastapi_events.errors import ConfigurationError


def test_kafka_url() -> None:
    source = source_from_url("kafka://k1:9092,k2:9092/orders.v1?group=billing&session.timeout.ms=6000")
    assert isinstance(source, KafkaSource)
    assert source.destination == "orders.v1"
    assert source.group == "billing"
    assert source.dead_letter_topic == "orders.v1.dlq"
    assert source.config == {"bootstrap.servers": "k1:9092,k2:9092", "session.timeout.ms": "6000"}
    other = source_from_url("kafka://k:9092/t?dlq=elsewhere")
    assert isinstance(other, KafkaSource)
    assert other.dead_letter_topic == "elsewhere"
    assert other.group == "fastapi-events"
    assert other.ordering == "key"
    strict = source_from_url("kafka://k:9092/t?ordering=partition")
    assert isinstance(strict, KafkaSource)
    assert strict.ordering == "partition"


def test_redis_url() -> None:
    source = source_from_url("redis://:secret@cache:6380/3/app:events?group=mailer&consumer=w1&claim_idle=5")
    assert isinstance(source, RedisStreamSource)
    assert source.url == "redis://:secret@cache:6380/3"
    assert source.destination == "app:events"
    assert (source.group, source.consumer, source.claim_idle) == ("mailer", "w1", 5.0)
    assert source.dead_letter_stream == "app:events.dlq"
    plain = source_from_url("rediss://cache/events")
    assert isinstance(plain, RedisStreamSource)
    assert plain.url == "rediss://cache/0"
    assert plain.destination == "events"


def test_sqs_url_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://env:4566")
    source = source_from_url("sqs://jobs")
    assert isinstance(source, SQSSource)
    assert (source.destination, source.region, source.endpoint_url) == ("jobs", "eu-west-1", "http://env:4566")
    assert source.dead_letter_queue == "jobs-dlq"
    explicit = source_from_url("sqs://jobs.fifo?region=us-east-2&endpoint_url=http://x:1&visibility_timeout=60")
    assert isinstance(explicit, SQSSource)
    assert (explicit.region, explicit.endpoint_url, explicit.visibility_timeout) == ("us-east-2", "http://x:1", 60)
    assert explicit.dead_letter_queue == "jobs-dlq.fifo"
    named = source_from_url("sqs://jobs?dlq=poison")
    assert isinstance(named, SQSSource)
    assert named.dead_letter_queue == "poison"


def test_pubsub_url() -> None:
    source = source_from_url("pubsub://my-project/workers?dlq_topic=dead")
    assert isinstance(source, PubSubSource)
    assert source.destination == "projects/my-project/subscriptions/workers"
    assert source.dead_letter_topic_path == "projects/my-project/topics/dead"
    default = source_from_url("pubsub://p/s")
    assert isinstance(default, PubSubSource)
    assert default.dead_letter_topic_path == "projects/p/topics/s-dlq"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("amqp://x/q", "unsupported scheme"),
        ("kafka://host:9092", "expected kafka://HOST:PORT/TOPIC"),
        ("kafka://host:9092/t?grup=g", "unknown option(s) grup"),
        ("kafka://host:9092/t?ordering=random", "ordering must be"),
        ("redis://host:6379/0", "expected redis://HOST:PORT/DB/STREAM"),
        ("redis://h/0/s?claim_idle=soon", "is not a number"),
        ("pubsub://project", "expected pubsub://PROJECT/SUBSCRIPTION"),
        ("sqs://q?colour=red", "unknown option(s) colour"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        source_from_url(url)


def test_every_broker_package_with_a_url_module_is_found_by_scheme() -> None:
    from fastapi_events.brokers._registry import schemes

    assert schemes() == ("kafka", "memory", "pubsub", "redis", "rediss", "sqs")
    with pytest.raises(ConfigurationError, match="expected one of kafka, memory, pubsub, redis, rediss, sqs"):
        source_from_url("amqp://x/q")


def test_a_new_broker_package_is_picked_up_without_registering_it(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fastapi_events.brokers
    from fastapi_events.brokers import _registry

    package = tmp_path / "fake"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "_url.py").write_text(
        "SCHEMES = ('fake',)\nUSAGE = 'fake://THING'\n\ndef source_from_url(url):\n    return ('fake source', url)\n"
    )
    monkeypatch.setattr(fastapi_events.brokers, "__path__", [*fastapi_events.brokers.__path__, str(tmp_path)])
    _registry._url_modules.cache_clear()
    _registry._factories.cache_clear()
    try:
        assert source_from_url("fake://x") == ("fake source", "fake://x")  # type: ignore[comparison-overlap]
        assert "fake://THING" in _registry.usage()
    finally:
        monkeypatch.undo()
        _registry._url_modules.cache_clear()
        _registry._factories.cache_clear()
        sys.modules.pop("fastapi_events.brokers.fake._url", None)
        sys.modules.pop("fastapi_events.brokers.fake", None)
    assert "fake" not in _registry.schemes()
