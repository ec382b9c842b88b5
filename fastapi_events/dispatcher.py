"""``dispatch()``: emit an event from anywhere in request-handling code."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from . import _hooks
from ._event_meta import IdentifiedEvent
from ._names import event_name_str
from ._runtime import EventBuffer, Outbox, event_store, get_runtime
from ._schedule import check_event_id, due_time
from .constants import FASTAPI_EVENTS_DISABLE_DISPATCH_ENV_VAR
from .errors import (
    ConfigurationError,
    MissingEventNameDuringDispatch,
    MultiplePayloadsDetectedDuringDispatch,
    NoEventContextError,
)
from .registry.base import BaseEventPayloadSchemaRegistry
from .registry.payload_schema import registry as default_registry
from .typing import Event
from .utils import strtobool

try:
    from pydantic import BaseModel as _BaseModel
except ImportError:  # pragma: no cover - pydantic is optional for Starlette-only users
    _BaseModel = None  # type: ignore[assignment,misc]

# The hook lists are mutated in place, never rebound, so module-level aliases stay valid.
_on_dispatch = _hooks.on_dispatch
_recorders = _hooks.recorders

# os.environ.get() encodes the key on every call (~1 µs); the raw mapping behind os.environ is what putenv and
# monkeypatch.setenv update too, so reading it directly still honours changes made after import.
_environ_data: dict[Any, Any] | None = getattr(os.environ, "_data", None)
_env_key: Any = FASTAPI_EVENTS_DISABLE_DISPATCH_ENV_VAR
if _environ_data is not None:
    try:
        _env_key = os.environ.encodekey(FASTAPI_EVENTS_DISABLE_DISPATCH_ENV_VAR)
    except AttributeError:  # pragma: no cover - not CPython's os.environ
        _environ_data = None


def _dispatch_disabled() -> bool:
    if _environ_data is not None:
        raw = _environ_data.get(_env_key)
        if raw is None:
            return False
        return strtobool(os.environ.decodevalue(raw))
    return strtobool(os.environ.get(FASTAPI_EVENTS_DISABLE_DISPATCH_ENV_VAR))


def _dump(model: Any, dict_args: dict[str, Any] | None) -> Any:
    return model.model_dump(**(dict_args or {}))


def dispatch(
    event_name_or_model: str | Enum | Any = None,
    payload: Any | None = None,
    event_name: str | Enum | None = None,
    validate_payload: bool = True,
    payload_schema_cls_dict_args: dict[str, Any] | None = None,
    payload_schema_registry: BaseEventPayloadSchemaRegistry | None = None,
    middleware_id: int | None = None,
    payload_schema_dump: bool = True,
    session: Any = None,
    delay: timedelta | float | None = None,
    at: datetime | None = None,
    event_id: str | None = None,
) -> None:
    """Dispatch an event.

    ``event_name_or_model`` is an event name (``str`` or ``Enum``) or a pydantic model instance whose class defines
    ``__event_name__`` (``event_name=`` overrides it). A payload with a schema in the registry is validated here, so
    a bad payload raises pydantic's ``ValidationError`` at the call site; with ``payload_schema_dump`` (default) the
    handlers get the validated model dumped with ``payload_schema_cls_dict_args``, otherwise the model itself.

    Inside a request the event is handled after the response is sent; with ``middleware_id`` it goes to that
    middleware's handlers at once, from anywhere (another task, a thread, a startup hook).

    With ``session`` (a SQLAlchemy ``Session`` or ``AsyncSession``) the event is written to the middleware's
    outbox in that session's transaction: the handlers get it only once the transaction commits, never after a
    rollback, even if this process dies in between (see :class:`fastapi_events.outbox.SQLAlchemyOutbox`).

    Outbox events can be delayed: ``delay`` (a ``timedelta`` or seconds, counted from this call) or ``at`` (a
    timezone-aware ``datetime``) is when handlers get it - not earlier, and about a second later at most.
    ``event_id`` is the caller's id for it: shown as ``event_meta().id``, sent by forwarders as the message id,
    what ``SQLAlchemyOutbox.cancel(session, event_id)`` cancels, and while an undelivered event has it, another
    dispatch with the same id is ignored. All three need ``session``.
    """
    if _dispatch_disabled():
        return

    # ``type(...) is str`` first: pydantic's metaclass makes isinstance() against BaseModel comparatively slow.
    if type(event_name_or_model) is not str and _BaseModel is not None and isinstance(event_name_or_model, _BaseModel):
        if payload is not None:
            raise MultiplePayloadsDetectedDuringDispatch(
                "dispatch() got a pydantic model as the event and a separate payload; pass only one"
            )
        model = event_name_or_model
        name = event_name if event_name is not None else getattr(model, "__event_name__", None)
        if name is None:
            raise MissingEventNameDuringDispatch(
                f"{type(model).__qualname__} has no __event_name__; pass event_name= to dispatch()"
            )
        payload = _dump(model, payload_schema_cls_dict_args) if payload_schema_dump else model
    else:
        name = event_name_or_model if event_name_or_model is not None else event_name
        if name is None:
            raise MissingEventNameDuringDispatch("dispatch() needs an event name or a pydantic model")
        if validate_payload:
            registry = default_registry if payload_schema_registry is None else payload_schema_registry
            if registry.data:
                payload = _validated(registry, name, payload, payload_schema_cls_dict_args, payload_schema_dump)

    event = (name, payload)
    due = None
    if delay is not None or at is not None or event_id is not None:
        due = _scheduled(name, session, delay, at, event_id)
    buffer = event_store.get(None)
    if middleware_id is not None and (buffer is None or buffer.runtime.middleware_id != middleware_id):
        runtime = get_runtime(middleware_id)
        if runtime is None:
            raise NoEventContextError(
                f"no EventHandlerASGIMiddleware with middleware_id={middleware_id!r} exists (yet)"
            )
        buffer = runtime.background
    elif buffer is None:
        if _recorders:  # unit tests of code that dispatches: capturing is enough, no app is needed
            _record(event)
            return
        raise NoEventContextError(
            f"dispatch({event_name_str(name)!r}) was called outside a request handled by "
            "EventHandlerASGIMiddleware; pass middleware_id= to dispatch from elsewhere, or use "
            "fastapi_events.testing.capture_events() in tests"
        )
    staged = None if session is None else _outbox_row(buffer, event, due, event_id)
    # Only once the event is sure to be buffered: a dispatch that raised above must not count as dispatched
    # nor leave a "send" span behind.
    if _recorders:
        _record(event)
    if _on_dispatch:
        for hook in _on_dispatch:
            event = hook(event)
    if staged is not None:
        outbox, row = staged
        outbox.stage(session, row, event)
        return
    buffer.add(event)


def _validated(
    registry: BaseEventPayloadSchemaRegistry, name: Any, payload: Any, dict_args: dict[str, Any] | None, dump: bool
) -> Any:
    schema = registry.data.get(event_name_str(name))
    if schema is None:
        return payload
    validated = schema.model_validate(payload)
    return _dump(validated, dict_args) if dump else validated


def received_event(name: str, payload: Any, event_id: str, dispatched_at: float | None) -> IdentifiedEvent:
    """An event another app sent (a webhook), with the sender's id: its payload checked against the payload
    schema registry as ``dispatch()`` checks it (pydantic's ``ValidationError``, a ``ValueError``, when refused)."""
    if default_registry.data:
        payload = _validated(default_registry, name, payload, None, True)
    return IdentifiedEvent(name, payload, event_id, dispatched_at)


def check_event_context() -> None:
    """Raise :class:`NoEventContextError` where :func:`dispatch_received` could not buffer an event."""
    if event_store.get(None) is None and not _recorders:
        raise NoEventContextError("no EventHandlerASGIMiddleware handles this request")


def dispatch_received(event: IdentifiedEvent) -> None:
    """Buffer an event of :func:`received_event` in the current request, as ``dispatch()`` buffers its own, so
    that handlers see the sender's id as ``event_meta().id`` and forwarders send it on as the message id."""
    if _dispatch_disabled():
        return
    buffer = event_store.get(None)
    if _recorders:
        _record(event)
    if buffer is None:
        if _recorders:
            return
        raise NoEventContextError(f"{event_name_str(event[0])!r} was received outside EventHandlerASGIMiddleware")
    result: Event = event
    for hook in _on_dispatch:
        result = hook(result)
    buffer.add(result)


def _scheduled(name: Any, session: Any, delay: Any, at: Any, event_id: Any) -> float | None:
    label = event_name_str(name)
    if session is None:
        given = ", ".join(
            f"{arg}=" for arg, value in (("delay", delay), ("at", at), ("event_id", event_id)) if value is not None
        )
        raise TypeError(
            f"dispatch({label!r}, {given}...) needs session=: delayed events and caller-chosen ids live in the "
            "transactional outbox; pass the SQLAlchemy session whose commit writes the event, "
            "dispatch(..., session=session)"
        )
    if event_id is not None:
        check_event_id(event_id)
    return due_time(label, delay, at)


def _outbox_row(
    buffer: EventBuffer, event: Event, due: float | None, event_id: str | None
) -> tuple[Outbox, dict[str, Any]]:
    outbox = buffer.runtime.outbox
    if outbox is None:
        raise ConfigurationError(
            f"dispatch({event_name_str(event[0])!r}, session=...) needs an outbox: "
            "EventHandlerASGIMiddleware(..., outbox=SQLAlchemyOutbox(engine))"
        )
    return outbox, outbox.encode(event, due, event_id)


def _record(event: Event) -> None:
    for recorder in _recorders:
        recorder.append(event)


__all__ = ["dispatch"]  # the helpers for received events serve fastapi_events.webhooks
