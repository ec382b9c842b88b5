"""Built-in event handlers."""

# The internal face: what the other packages of fastapi_events may use. Not public API: no stability promise.
from ._dependencies import Kind as Kind
