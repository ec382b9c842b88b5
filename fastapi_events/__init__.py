"""Event dispatching and handling for FastAPI and Starlette.

The public API is importable from here; the module paths of fastapi-events 0.x
(``fastapi_events.dispatcher.dispatch``, ``fastapi_events.middleware.EventHandlerASGIMiddleware``, ...) keep working.
"""

from ._event_meta import EventMeta, event_meta
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
from .handlers.base import BaseEventHandler
from .handlers.echo import EchoHandler
from .handlers.local import LocalHandler, local_handler
from .handlers.null import NullHandler
from .middleware import EventHandlerASGIMiddleware
from .registry.payload_schema import registry as payload_schema_registry
from .typing import Event

__version__ = "1.0.0"

__all__ = [
    "BaseEventHandler",
    "ConfigurationError",
    "EchoHandler",
    "Event",
    "EventHandlerASGIMiddleware",
    "EventMeta",
    "FastapiEventError",
    "HandlerFailedError",
    "LocalHandler",
    "MissingEventNameDuringDispatch",
    "MissingEventNameDuringRegistration",
    "MissingEventNameError",
    "MultiplePayloadsDetectedDuringDispatch",
    "NoEventContextError",
    "NullHandler",
    "SerializationError",
    "__version__",
    "dispatch",
    "drain",
    "event_meta",
    "local_handler",
    "payload_schema_registry",
]
