"""Exceptions raised by fastapi-events (names kept from fastapi-events 0.x)."""

from __future__ import annotations


class FastapiEventError(Exception):
    """Base class of every error this package raises."""


class ConfigurationError(FastapiEventError):
    """The package or one of its handlers is configured in a way that cannot work."""


class MissingEventNameError(FastapiEventError):
    """An event name could not be determined."""


class MissingEventNameDuringDispatch(MissingEventNameError):
    """``dispatch()`` was called without an event name and without a model carrying ``__event_name__``."""


class MissingEventNameDuringRegistration(MissingEventNameError):
    """A payload schema was registered without ``event_name=`` and without ``__event_name__``."""


class MultiplePayloadsDetectedDuringDispatch(FastapiEventError, ValueError):
    """``dispatch()`` received a pydantic model as the event *and* a separate ``payload``."""


class NoEventContextError(FastapiEventError, LookupError):
    """``dispatch()`` was called outside a request and without a known ``middleware_id``.

    It is a :class:`LookupError`, as in fastapi-events 0.x, so existing ``except LookupError`` code keeps working.
    """


class HandlerFailedError(FastapiEventError):
    """One or more handlers failed for an event (raised where a caller must know, e.g. consumers)."""

    def __init__(self, event_name: str, failures: list[tuple[str, BaseException]]) -> None:
        self.event_name = event_name
        self.failures = failures
        names = ", ".join(f"{handler}: {type(exc).__name__}: {exc}" for handler, exc in failures)
        super().__init__(f"event {event_name!r}: {len(failures)} handler(s) failed ({names})")


class HandlerTimeoutError(FastapiEventError, TimeoutError):
    """A consumer's handlers for an event were still running after the consumer's ``handler_timeout``."""

    def __init__(self, event_name: str, timeout: float) -> None:
        self.event_name = event_name
        self.timeout = timeout
        super().__init__(f"event {event_name!r}: handler(s) timed out after {timeout:g}s")


class SerializationError(FastapiEventError, ValueError):
    """An event cannot be encoded for the wire (not JSON-serialisable, or over the broker's size limit)."""

    def __init__(self, event_name: str, reason: str) -> None:
        self.event_name = event_name
        self.reason = reason
        super().__init__(f"event {event_name!r} cannot be encoded: {reason}")


__all__ = [
    "ConfigurationError",
    "FastapiEventError",
    "HandlerFailedError",
    "HandlerTimeoutError",
    "MissingEventNameDuringDispatch",
    "MissingEventNameDuringRegistration",
    "MissingEventNameError",
    "MultiplePayloadsDetectedDuringDispatch",
    "NoEventContextError",
    "SerializationError",
]


class MalformedMessageError(FastapiEventError, ValueError):
    """A message received from a broker is not a valid ``["event name", payload]`` JSON body."""

    def __init__(self, reason: str, body: bytes | str | None = None) -> None:
        self.reason = reason
        self.body = body
        excerpt = ""
        if body is not None:
            text = body if isinstance(body, str) else body[:200].decode("utf-8", "replace")
            excerpt = f" (body starts with {text[:200]!r})"
        super().__init__(f"malformed event message: {reason}{excerpt}")


__all__ += ["MalformedMessageError"]
