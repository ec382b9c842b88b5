"""Every forwarder takes the same delivery options, with the same defaults and the same validation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fastapi_events.brokers.kafka import KafkaForwardHandler
from fastapi_events.brokers.pubsub import GoogleCloudSimplePubSubHandler
from fastapi_events.brokers.redis import RedisStreamForwardHandler
from fastapi_events.brokers.sqs import SQSForwardHandler
from fastapi_events.delivery import DeliveryOptions, ForwardHandler, RetryPolicy, Transport
from fastapi_events.delivery._options import BaseDeliveryKwargs, DeliveryKwargs
from fastapi_events.errors import ConfigurationError
from fastapi_events.testing import InMemoryBroker

FORWARDERS: dict[str, Callable[..., ForwardHandler]] = {
    "sqs": lambda **options: SQSForwardHandler("orders", "eu-central-1", **options),
    "pubsub": lambda **options: GoogleCloudSimplePubSubHandler("project", "orders", **options),
    "kafka": lambda **options: KafkaForwardHandler("orders", "127.0.0.1:9", **options),
    "redis": lambda **options: RedisStreamForwardHandler("orders", "redis://127.0.0.1:9/0", **options),
    "memory": lambda **options: InMemoryBroker().forwarder("orders", **options),
    "custom transport": lambda **options: ForwardHandler(_a_transport(), **options),
}


def _a_transport() -> Transport:
    """A Transport built the way a custom one is used: handed to ForwardHandler directly."""
    return InMemoryBroker().forwarder("orders").transport


def test_the_keyword_spec_names_exactly_the_declared_options() -> None:
    declared = {field.name for field in dataclasses.fields(DeliveryOptions)}
    assert set(DeliveryKwargs.__optional_keys__) == declared
    assert set(BaseDeliveryKwargs.__optional_keys__) == declared - {"serializer", "id_generator"}


def _non_defaults(tmp_path: Path) -> dict[str, Any]:
    return {
        "spool_path": tmp_path / "spool.db",
        "retry": RetryPolicy(max_attempts=3),
        "on_dead_letter": lambda message, reason: None,
        "max_queue_size": 5,
        "flush_timeout": 1.5,
        "key": lambda event: "k",
        "serializer": lambda event: ["x"],
        "id_generator": lambda: "id",
        "relay_interval": 0.5,
        "reconnect_max_delay": 0.25,
        "outage_log_interval": 10.0,
    }


@pytest.mark.parametrize("broker", FORWARDERS)
def test_every_forwarder_takes_every_option_and_reports_it(broker: str, tmp_path: Path) -> None:
    values = _non_defaults(tmp_path)
    assert set(values) == {field.name for field in dataclasses.fields(DeliveryOptions)}
    forwarder = FORWARDERS[broker](**values)
    for name, value in values.items():
        if broker == "memory" and name == "on_dead_letter":
            continue  # the in-memory forwarder records dead letters on its topic, then calls the user's callback
        assert getattr(forwarder.options, name) == value, name
    assert forwarder.spool_path == str(values["spool_path"])
    assert forwarder.retry == values["retry"]
    assert forwarder.flush_timeout == 1.5
    assert forwarder.id_generator() == "id"


@pytest.mark.parametrize("broker", FORWARDERS)
def test_every_forwarder_has_the_same_defaults(broker: str) -> None:
    options = FORWARDERS[broker]().options
    defaults = DeliveryOptions()
    for field in dataclasses.fields(DeliveryOptions):
        if broker == "memory" and field.name == "on_dead_letter":
            continue
        assert getattr(options, field.name) == getattr(defaults, field.name), field.name
    assert defaults.flush_timeout == 30.0
    assert defaults.max_queue_size == 10_000
    assert defaults.retry is None


BAD_VALUES = [
    ("max_queue_size", 0),
    ("max_queue_size", True),
    ("max_queue_size", 2.5),
    ("flush_timeout", -1),
    ("flush_timeout", float("nan")),
    ("relay_interval", 0),
    ("reconnect_max_delay", "2"),
    ("outage_log_interval", 0),
    ("retry", {"max_attempts": 3}),
    ("on_dead_letter", "log"),
    ("key", 5),
    ("serializer", "json"),
    ("id_generator", 7),
    ("spool_path", ""),
]


@pytest.mark.parametrize("broker", FORWARDERS)
@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_a_bad_value_is_refused_at_construction_naming_the_option(broker: str, name: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=name):
        FORWARDERS[broker](**{name: value})


@pytest.mark.parametrize("broker", FORWARDERS)
def test_an_unknown_keyword_is_a_type_error_never_passed_on(broker: str) -> None:
    with pytest.raises(TypeError, match="flush_timout"):
        FORWARDERS[broker](flush_timout=5)


def test_kafka_says_where_librdkafka_settings_go() -> None:
    # A name librdkafka does not know either (1.0's underscore settings still work: tests/brokers/kafka).
    with pytest.raises(TypeError, match=r"KafkaForwardHandler\(\).*lingr_ms.*config="):
        KafkaForwardHandler("orders", "127.0.0.1:9", lingr_ms=20)  # type: ignore[call-arg]
    forwarder = KafkaForwardHandler("orders", "127.0.0.1:9", config={"linger.ms": 20}, flush_timeout=3)
    assert forwarder.transport.config["linger.ms"] == 20  # type: ignore[attr-defined]
    assert forwarder.flush_timeout == 3


def test_sqs_keeps_boto_client_keywords_apart_from_delivery_options() -> None:
    forwarder = SQSForwardHandler(
        "orders", "eu-central-1", endpoint_url="http://127.0.0.1:9", aws_access_key_id="x", flush_timeout=2
    )
    assert forwarder.transport.boto_client_kwargs == {  # type: ignore[attr-defined]
        "endpoint_url": "http://127.0.0.1:9",
        "aws_access_key_id": "x",
    }
    assert forwarder.flush_timeout == 2


def test_pubsub_takes_key_or_its_older_name_ordering_key() -> None:
    def by_user(event: Any) -> str:
        return "u"

    assert GoogleCloudSimplePubSubHandler("p", "t", key=by_user).transport.ordering  # type: ignore[attr-defined]
    assert GoogleCloudSimplePubSubHandler("p", "t", ordering_key=by_user).key is by_user
    with pytest.raises(ConfigurationError, match="ordering_key"):
        GoogleCloudSimplePubSubHandler("p", "t", key=by_user, ordering_key=by_user)


def test_options_object_or_keywords_not_both() -> None:
    transport = _a_transport()
    assert ForwardHandler(transport, DeliveryOptions(flush_timeout=4)).flush_timeout == 4
    with pytest.raises(TypeError, match="not both"):
        ForwardHandler(transport, DeliveryOptions(), flush_timeout=4)
