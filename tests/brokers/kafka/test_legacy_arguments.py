"""The 1.0 spellings of KafkaForwardHandler's arguments still work in 1.x, each with a warning naming the new one."""

from __future__ import annotations

import pytest

from fastapi_events import KafkaForwardHandler
from fastapi_events.errors import ConfigurationError


def key(event: object) -> str:
    return "k"


def serializer(event: object) -> bytes:
    return b"{}"


def test_underscore_keywords_become_librdkafka_settings_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"linger_ms=.*deprecated.*config=\{'linger\.ms': \.\.\.\}"):
        forwarder = KafkaForwardHandler("orders", "127.0.0.1:9", linger_ms=20, flush_timeout=3)
    assert forwarder.transport.config["linger.ms"] == 20  # type: ignore[attr-defined]
    assert forwarder.flush_timeout == 3


def test_config_wins_over_the_old_keyword_for_the_same_setting() -> None:
    with pytest.warns(DeprecationWarning, match="linger_ms"):
        forwarder = KafkaForwardHandler(
            "orders", "127.0.0.1:9", config={"linger.ms": 5, "compression.type": "lz4"}, linger_ms=20
        )
    config = forwarder.transport.config  # type: ignore[attr-defined]
    assert (config["linger.ms"], config["compression.type"]) == (5, "lz4")


def test_positional_key_serializer_and_spool_path_work_with_a_warning(tmp_path) -> None:
    spool = tmp_path / "kafka.spool"
    with pytest.warns(DeprecationWarning, match=r"as a keyword argument") as caught:
        forwarder = KafkaForwardHandler("orders", "127.0.0.1:9", key, serializer, spool)
    assert [str(w.message).split(";")[1].strip() for w in caught] == [
        "use key=... as a keyword argument",
        "use serializer=... as a keyword argument",
        "use spool_path=... as a keyword argument",
    ]
    options = forwarder.options  # type: ignore[attr-defined]
    assert (options.key, options.serializer, str(options.spool_path)) == (key, serializer, str(spool))


def test_a_bad_value_of_an_old_keyword_is_refused_by_librdkafka() -> None:
    with pytest.warns(DeprecationWarning, match="compression_type"), pytest.raises(ConfigurationError, match=r"zip"):
        KafkaForwardHandler("orders", "127.0.0.1:9", compression_type="zip")


def test_a_misspelt_option_is_still_a_type_error_never_a_setting() -> None:
    with pytest.raises(TypeError, match=r"flush_timout"):
        KafkaForwardHandler("orders", "127.0.0.1:9", flush_timout=5)  # type: ignore[call-arg]


def test_too_many_or_duplicate_positional_arguments_are_type_errors() -> None:
    with pytest.raises(TypeError, match="positional"):
        KafkaForwardHandler("orders", "127.0.0.1:9", key, serializer, None, "extra")
    with pytest.raises(TypeError, match="multiple values for argument 'key'"):
        KafkaForwardHandler("orders", "127.0.0.1:9", key, key=key)
