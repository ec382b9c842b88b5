"""The 1.0 spellings of ``KafkaForwardHandler``'s arguments, kept working (with a ``DeprecationWarning``) in 1.x.

1.0 took ``key``, ``serializer`` and ``spool_path`` positionally and librdkafka settings as keywords with
underscores (``linger_ms=20`` for ``linger.ms``). A keyword is taken as such a setting only if librdkafka knows the
dotted name: a misspelt delivery option (``flush_timout``) stays a ``TypeError`` and never reaches the producer.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from ...delivery import OPTION_NAMES
from ._transport import _probe_logger

# The 1.0 positional parameters after ``bootstrap_servers``, in order.
POSITIONAL = ("key", "serializer", "spool_path")


def _known_to_librdkafka(name: str, value: Any) -> bool:
    try:
        Producer({name: value, "logger": _probe_logger})
    except KafkaException as exc:
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        return error is None or "No such configuration property" not in error.str()
    return True


def _warn(old: str, new: str) -> None:
    warnings.warn(
        f"KafkaForwardHandler({old}) is deprecated since 1.1 and will be removed in 2.0; use {new}",
        DeprecationWarning,
        stacklevel=4,
    )


def take_legacy_arguments(positional: tuple[Any, ...], options: dict[str, Any]) -> dict[str, Any]:
    """Move 1.0-style arguments into ``options`` (positional ones) and return the librdkafka settings found among
    the keywords (removed from ``options``), each with a warning naming the new spelling."""
    if len(positional) > len(POSITIONAL):
        raise TypeError(
            f"KafkaForwardHandler() takes at most {2 + len(POSITIONAL)} positional arguments "
            f"({2 + len(positional)} given)"
        )
    for name, value in zip(POSITIONAL, positional, strict=False):
        if name in options:
            raise TypeError(f"KafkaForwardHandler() got multiple values for argument '{name}'")
        _warn(f"topic, bootstrap_servers, {name}", f"{name}=... as a keyword argument")
        options[name] = value
    settings: dict[str, Any] = {}
    for name in [name for name in options if name not in OPTION_NAMES]:
        dotted = name.replace("_", ".")
        if _known_to_librdkafka(dotted, options[name]):
            settings[dotted] = options.pop(name)
            _warn(f"{name}=...", f"config={{{dotted!r}: ...}}")
    return settings


def merge(settings: Mapping[str, Any], config: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """``config`` wins over a 1.0-style keyword for the same setting."""
    return {**settings, **(config or {})} if settings else config


__all__ = ["POSITIONAL", "merge", "take_legacy_arguments"]
