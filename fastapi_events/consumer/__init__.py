"""Consumers: run the same ``LocalHandler`` registrations on other machines, fed by a broker.

``python -m fastapi_events consume URL --handlers module:attribute`` or, from Python::

    from fastapi_events.consumer import consume
    await consume("kafka://127.0.0.1:9092/orders?group=billing", handler)
"""

from __future__ import annotations

from ..brokers._registry import source_from_url
from ._loading import load_handler, load_handlers
from ._process import consume, run_consumer
from ._runner import DEFAULT_RETRY, Consumer, ConsumerStats, Deserializer
from ._source import Delivery, Source, dead_letter_attributes

__all__ = [
    "DEFAULT_RETRY",
    "Consumer",
    "ConsumerStats",
    "Delivery",
    "Deserializer",
    "Source",
    "consume",
    "dead_letter_attributes",
    "load_handler",
    "load_handlers",
    "run_consumer",
    "source_from_url",
]
