"""Event dispatching and handling for FastAPI and Starlette.

The public API is importable from here; the module paths of fastapi-events 0.x
(``fastapi_events.dispatcher.dispatch``, ``fastapi_events.middleware.EventHandlerASGIMiddleware``, ...) keep working.
"""

from typing import TYPE_CHECKING

from ._event_meta import EventMeta, event_meta
from ._lazy import lazy_exports
from ._runtime import drain
from .dispatcher import dispatch
from .errors import (
    ConfigurationError,
    FastapiEventError,
    HandlerFailedError,
    MissingEventNameDuringDispatch,
    MissingEventNameDuringRegistration,
    MissingEventNameError,
    MultiplePayloadsDetectedDuringDispatch,
    NoEventContextError,
    SerializationError,
)
from .handlers.base import BaseEventHandler, report_failure
from .handlers.echo import EchoHandler
from .handlers.local import LocalHandler, local_handler
from .handlers.null import NullHandler
from .middleware import EventHandlerASGIMiddleware
from .registry.payload_schema import registry as payload_schema_registry
from .typing import Event

if TYPE_CHECKING:
    from .brokers.kafka import KafkaForwardHandler
    from .brokers.pubsub import GoogleCloudSimplePubSubHandler
    from .brokers.redis import RedisStreamForwardHandler
    from .brokers.sqs import SQSForwardHandler
    from .delivery import DeliveryOptions, ForwardHandler, RetryPolicy

# Imported on first use: ``import fastapi_events`` must not import a broker SDK (nor the delivery layer).
__getattr__ = lazy_exports(
    __name__,
    {
        ".brokers.sqs": ("SQSForwardHandler",),
        ".brokers.pubsub": ("GoogleCloudSimplePubSubHandler",),
        ".brokers.kafka": ("KafkaForwardHandler",),
        ".brokers.redis": ("RedisStreamForwardHandler",),
        ".delivery": ("DeliveryOptions", "ForwardHandler", "RetryPolicy"),
    },
)

__version__ = "1.1.0"

__all__ = [
    "BaseEventHandler",
    "ConfigurationError",
    "DeliveryOptions",
    "EchoHandler",
    "Event",
    "EventHandlerASGIMiddleware",
    "EventMeta",
    "FastapiEventError",
    "ForwardHandler",
    "GoogleCloudSimplePubSubHandler",
    "HandlerFailedError",
    "KafkaForwardHandler",
    "LocalHandler",
    "MissingEventNameDuringDispatch",
    "MissingEventNameDuringRegistration",
    "MissingEventNameError",
    "MultiplePayloadsDetectedDuringDispatch",
    "NoEventContextError",
    "NullHandler",
    "RedisStreamForwardHandler",
    "RetryPolicy",
    "SQSForwardHandler",
    "SerializationError",
    "__version__",
    "dispatch",
    "drain",
    "event_meta",
    "local_handler",
    "payload_schema_registry",
    "report_failure",
]
