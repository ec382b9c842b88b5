"""One package per broker (``sqs``, ``pubsub``, ``kafka``, ``redis``): its forwarder, the forwarder's transport,
the consumer's source and its consumer URL."""

from __future__ import annotations

from ..consumer import register_url_resolver

# isort: split
# The internal face: what the other packages of fastapi_events may use. Not public API: no stability promise.
from ._registry import schemes as schemes
from ._registry import source_from_url as source_from_url
from ._registry import usage as usage

# The consumer resolves URLs through this package without importing it (it sits below the brokers).
register_url_resolver(source_from_url)
