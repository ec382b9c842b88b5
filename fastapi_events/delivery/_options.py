"""The delivery options every forwarder takes: declared, defaulted and validated here only.

:class:`DeliveryOptions` is the declaration (names, types, defaults, checks). :class:`DeliveryKwargs` spells the
same names as keyword arguments, so forwarders take them as ``**options: Unpack[DeliveryKwargs]`` and type
checkers check users' calls; ``tests/delivery/test_options.py`` keeps the two in step.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypedDict

from ..codec import Serializer
from ..errors import ConfigurationError
from ._deadletters import DeadLetterCallback
from ._encoding import KeyFunction, new_event_id
from ._retry import RetryPolicy


@dataclass(frozen=True, kw_only=True)
class DeliveryOptions:
    """How a forwarder delivers; every broker's forwarder accepts these keywords with these defaults.

    - ``spool_path``: SQLite file that keeps events until the broker confirmed them (survives crashes and
      restarts; several forwarders and processes may share one). ``None``: a bounded in-memory queue.
    - ``retry``: budget and backoff for events the broker refused for a transient reason.
    - ``on_dead_letter(message, reason)``: called (sync or async) for each event given up on.
    - ``max_queue_size``: events held in memory without a spool; beyond it, dispatching requests wait for room
      (backpressure). Events are given up (logged, counted, ``on_dead_letter``) only while the broker is down.
    - ``flush_timeout``: seconds ``flush()`` and shutdown wait for the broker to confirm what is pending.
    - ``key(event) -> str | None``: per-key ordering (Kafka key, Pub/Sub ordering key, SQS FIFO group...).
    - ``serializer(event) -> JSON-able``: the message body (default ``["event name", payload]``).
    - ``id_generator() -> str``: the event id carried in the message attributes (default: a random UUID).
    - ``relay_interval``: seconds between checks for spool entries added by other tools (``spool replay``).
    - ``reconnect_max_delay``: the longest pause between two attempts to reach a broker that is down.
    - ``outage_log_interval``: while the broker cannot be reached, a warning at least this often (seconds).
    """

    spool_path: str | os.PathLike[str] | None = None
    retry: RetryPolicy | None = None
    on_dead_letter: DeadLetterCallback | None = None
    max_queue_size: int = 10_000
    flush_timeout: float = 30.0
    key: KeyFunction | None = None
    serializer: Serializer | None = None
    id_generator: Callable[[], str] | None = None
    relay_interval: float = 1.0
    reconnect_max_delay: float = 2.0
    outage_log_interval: float = 30.0

    def __post_init__(self) -> None:
        if self.spool_path is not None and (
            not isinstance(self.spool_path, (str, os.PathLike)) or not os.fspath(self.spool_path)
        ):
            raise ConfigurationError(f"spool_path must be a file path or None, not {self.spool_path!r}")
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a fastapi_events.RetryPolicy or None, not {self.retry!r}")
        for name in ("on_dead_letter", "key", "serializer", "id_generator"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigurationError(f"{name} must be a callable or None, not {value!r}")
        if isinstance(self.max_queue_size, bool) or not isinstance(self.max_queue_size, int) or self.max_queue_size < 1:
            raise ConfigurationError(f"max_queue_size must be an int >= 1, not {self.max_queue_size!r}")
        _check_seconds("flush_timeout", self.flush_timeout, allow_zero=True)
        _check_seconds("relay_interval", self.relay_interval, allow_zero=False)
        _check_seconds("reconnect_max_delay", self.reconnect_max_delay, allow_zero=False)
        _check_seconds("outage_log_interval", self.outage_log_interval, allow_zero=False)

    @property
    def retry_policy(self) -> RetryPolicy:
        return self.retry or RetryPolicy()

    @property
    def new_id(self) -> Callable[[], str]:
        return self.id_generator or new_event_id


class BaseDeliveryKwargs(TypedDict, total=False):
    """:class:`DeliveryKwargs` without ``serializer`` and ``id_generator``, which the 0.x forwarders
    (``SQSForwardHandler``, ``GoogleCloudSimplePubSubHandler``) take as positional parameters."""

    spool_path: str | os.PathLike[str] | None
    retry: RetryPolicy | None
    on_dead_letter: DeadLetterCallback | None
    max_queue_size: int
    flush_timeout: float
    key: KeyFunction | None
    relay_interval: float
    reconnect_max_delay: float
    outage_log_interval: float


class DeliveryKwargs(BaseDeliveryKwargs, total=False):
    """:class:`DeliveryOptions` as keyword arguments (see there for their meaning and defaults)."""

    serializer: Serializer | None
    id_generator: Callable[[], str] | None


OPTION_NAMES = frozenset(f.name for f in fields(DeliveryOptions))


def _check_seconds(name: str, value: object, *, allow_zero: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):  # type: ignore[operator]
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be a number of seconds {bound}, not {value!r}")


def split_options(
    owner: str, options: Mapping[str, Any], broker_names: Collection[str] = (), *, hint: str = ""
) -> tuple[DeliveryOptions, dict[str, Any]]:
    """Build the :class:`DeliveryOptions` from a forwarder's keyword arguments; return the broker's own
    keywords (``broker_names``) beside them. Any other name is a :class:`TypeError` naming ``owner``, so a
    misspelt option fails at construction instead of reaching an SDK."""
    unknown = sorted(set(options) - OPTION_NAMES - set(broker_names))
    if unknown:
        accepted = ", ".join(sorted(OPTION_NAMES | set(broker_names)))
        raise TypeError(
            f"{owner}() got unexpected keyword argument(s) {', '.join(unknown)}; it accepts {accepted}"
            + (f" ({hint})" if hint else "")
        )
    delivery = DeliveryOptions(**{name: value for name, value in options.items() if name in OPTION_NAMES})
    return delivery, {name: value for name, value in options.items() if name not in OPTION_NAMES}


__all__ = ["OPTION_NAMES", "BaseDeliveryKwargs", "DeliveryKwargs", "DeliveryOptions", "split_options"]
