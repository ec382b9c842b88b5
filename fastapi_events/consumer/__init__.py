"""Consumers: run the same ``LocalHandler`` registrations on other machines, fed by a broker.

``python -m fastapi_events consume URL --handlers module:attribute`` or, from Python::

    from fastapi_events.consumer import consume
    await consume("kafka://127.0.0.1:9092/orders?group=billing", handler)
"""

from __future__ import annotations

from ._loading import load_handler, load_handlers
from ._process import consume, run_consumer
from ._runner import DEFAULT_RETRY, Consumer, ConsumerStats, Deserializer
from ._source import Delivery, Source, dead_letter_attributes, source_from_url

# isort: split
# The internal face: what the other packages of fastapi_events may use. Not public API: no stability promise.
from ._coalesce import Coalescer as Coalescer
from ._loading import load_deserializer as load_deserializer
from ._loading import load_object as load_object
from ._source import ATTR_DEAD_LETTER_ATTEMPTS as ATTR_DEAD_LETTER_ATTEMPTS
from ._source import ATTR_DEAD_LETTER_REASON as ATTR_DEAD_LETTER_REASON
from ._source import ATTR_DEAD_LETTER_SOURCE as ATTR_DEAD_LETTER_SOURCE
from ._source import ATTR_ORIGINAL_MESSAGE_ID as ATTR_ORIGINAL_MESSAGE_ID
from ._source import register_url_resolver as register_url_resolver

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
