"""A producer setting librdkafka rejects fails when the forwarder is built, never as a producer that never starts."""

from __future__ import annotations

import pytest

from fastapi_events.errors import ConfigurationError
from fastapi_events.handlers.kafka import KafkaForwardHandler


def test_a_misspelt_librdkafka_setting_fails_at_construction_naming_it() -> None:
    with pytest.raises(ConfigurationError, match=r"linger\.mss"):
        KafkaForwardHandler("orders", "127.0.0.1:9092", config={"linger.mss": 5})


def test_an_invalid_value_fails_at_construction_naming_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="compression"):
        KafkaForwardHandler("orders", "127.0.0.1:9092", config={"compression.type": "zip"})


def test_valid_settings_construct_without_touching_the_network() -> None:
    # Nothing listens on port 1: construction must neither connect nor wait.
    handler = KafkaForwardHandler("orders", "127.0.0.1:1", config={"linger.ms": 20, "compression.type": "lz4"})
    assert handler.transport.config["linger.ms"] == 20  # type: ignore[attr-defined]
