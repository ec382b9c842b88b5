"""How a failed Pub/Sub publish is judged: worth retrying, never deliverable, or a sign that the service (or the
topic) cannot be reached at all."""

from __future__ import annotations

from concurrent.futures import Future

from google.api_core import exceptions as api_exceptions
from google.cloud.pubsub_v1.publisher import exceptions as publisher_exceptions

from ...delivery import EntryResult, Outcome

# gRPC status names: a retry may succeed (outage, overload, deadline, token refresh) ...
_TRANSIENT_CODES = frozenset(
    {
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "ABORTED",
        "INTERNAL",
        "RESOURCE_EXHAUSTED",
        "UNKNOWN",
        "CANCELLED",
        "UNAUTHENTICATED",
    }
)
# ... or the request itself is wrong and resending it can never help.
_PERMANENT_CODES = frozenset(
    {
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "PERMISSION_DENIED",
        "FAILED_PRECONDITION",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "ALREADY_EXISTS",
    }
)


def classify(exc: BaseException) -> EntryResult:
    """Map one failed publish to RETRY or PERMANENT, with a reason fit for a dead-letter record."""
    reason = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, publisher_exceptions.MessageTooLargeError):
        return EntryResult(Outcome.PERMANENT, f"message too large: {exc}")
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        status = getattr(exc.grpc_status_code, "name", None)
        if status in _PERMANENT_CODES:
            return EntryResult(Outcome.PERMANENT, f"{status}: {exc.message}")
        if status in _TRANSIENT_CODES:
            return EntryResult(Outcome.RETRY, f"{status}: {exc.message}")
        # No gRPC status (REST transport): the HTTP class tells client mistakes from server trouble.
        if isinstance(exc, api_exceptions.ClientError) and not isinstance(exc, api_exceptions.TooManyRequests):
            return EntryResult(Outcome.PERMANENT, reason)
        return EntryResult(Outcome.RETRY, reason)
    if isinstance(exc, (TypeError, ValueError)):
        # Raised synchronously by ``publish()`` for data/attributes the client refuses to send.
        return EntryResult(Outcome.PERMANENT, reason)
    # Paused ordering keys, batches cancelled behind a failed ordered batch, flow control, a stopped client
    # and anything unknown: nothing says the message itself is bad, so let the retry budget decide.
    return EntryResult(Outcome.RETRY, reason)


class BrokerUnreachableError(ConnectionError):
    """No entry of a batch got through: the service could not be reached, did not answer in time, or the topic
    cannot be used (missing, no permission)."""


def is_unavailable(item: object) -> bool:
    if isinstance(item, Future) and item.done():
        item = item.exception()
    return isinstance(item, api_exceptions.ServiceUnavailable)


def is_unreachable(item: object) -> bool:
    """The entry failed because of the service or the topic, not because of anything about the entry."""
    if isinstance(item, Future):
        if not item.done():
            return True
        exc = item.exception()
        if exc is None:
            return False
        item = exc
    # A missing topic (being recreated, an emulator restarted, infrastructure redeployed) or a missing permission
    # is waited out like an outage: dead-lettering every event within seconds would lose them for a fix that
    # usually comes minutes later. The forwarder keeps saying so in the log.
    if isinstance(item, (api_exceptions.NotFound, api_exceptions.PermissionDenied, api_exceptions.Forbidden)):
        return True
    if isinstance(item, api_exceptions.GoogleAPICallError):
        return getattr(item.grpc_status_code, "name", None) in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    return False


__all__ = ["BrokerUnreachableError", "classify", "is_unavailable", "is_unreachable"]
