"""The handlers view: what the mounting app's middleware runs, joined with what the recorder saw.

Local registrations, forwarders and outboxes (a middleware's ``outbox=``) are found through the runtime of the
``EventHandlerASGIMiddleware`` wrapping the inspector's own request: the inspector describes the app it is mounted
in, not every app of the process. Served outside any middleware (on its own port, say) it describes every live
middleware of the process. Consumers show up through the ``on_consume`` hook, since a consumer runs without a
middleware.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from .. import _runtime
from .._latency import Latency
from .._report import qualified_name
from ..delivery import ForwardHandler, StoredRecord
from ..handlers.local import LocalHandler, Registration
from ._recorder import Recorder
from ._stats import ChannelStats, HandlerStats

# What the inspector relies on beyond the handler protocol, declared here because the packages that implement it
# sit beside or above the inspector's layer (``webhooks`` needs httpx, ``outbox`` SQLAlchemy): the inspector
# recognises them by these members, never by importing them.


@runtime_checkable
class Endpoints(Protocol):
    """A handler that forwards through a :class:`~fastapi_events.delivery.ForwardHandler` of its own per
    destination (``WebhookForwardHandler``: one per endpoint); each is listed as a forwarder."""

    @property
    def lanes(self) -> Sequence[ForwardHandler]: ...

    def endpoint_states(self) -> list[dict[str, Any]]:
        """Each endpoint as the handlers view shows it: url, events, state, disabled_reason, counts."""
        ...


class ScheduledItem(Protocol):
    """A delayed event not due yet, as an outbox lists it (``fastapi_events.outbox.ScheduledEvent``)."""

    @property
    def id(self) -> str: ...
    @property
    def event_name(self) -> str: ...
    @property
    def payload(self) -> Any: ...
    @property
    def due_at(self) -> float: ...
    @property
    def created_at(self) -> float: ...
    @property
    def key(self) -> str | None: ...


@runtime_checkable
class InspectedOutbox(Protocol):
    """What the inspector shows of and does with a middleware's transactional outbox
    (:class:`~fastapi_events.outbox.SQLAlchemyOutbox`), beyond what the runtime needs of it."""

    @property
    def table_name(self) -> str: ...
    @property
    def relay(self) -> bool:
        """Whether this process relays the outbox (False: it only writes)."""
        ...

    async def dead_letters(self, limit: int = 100) -> list[StoredRecord]: ...
    async def replay(self, ids: Sequence[str] | None = None) -> int: ...
    async def purge(self, ids: Sequence[str] | None = None) -> int: ...
    async def scheduled(self, limit: int = 100) -> Sequence[ScheduledItem]: ...
    async def cancel_scheduled(self, ids: Sequence[str]) -> int: ...


def mounting_runtimes() -> list[_runtime.Runtime]:
    """The runtime of the middleware handling the current request; every live one outside any middleware."""
    buffer = _runtime.event_store.get(None)
    if buffer is not None:
        return [buffer.runtime]
    return _runtime.all_runtimes()


def runtime_ids() -> set[int] | None:
    """Ids of the mounting app's runtimes, to pick its events out of the recorder's; None outside any middleware."""
    buffer = _runtime.event_store.get(None)
    return None if buffer is None else {id(buffer.runtime)}


def all_handlers() -> Iterator[Any]:
    """Every handler object of the mounting app's middleware, each once."""
    seen: set[int] = set()
    for runtime in mounting_runtimes():
        for handler in runtime.handlers:
            if id(handler) not in seen:
                seen.add(id(handler))
                yield handler


def outboxes() -> list[InspectedOutbox]:
    """The transactional outbox of the mounting app's middleware (``EventHandlerASGIMiddleware(..., outbox=...)``)."""
    found: dict[int, InspectedOutbox] = {}
    for runtime in mounting_runtimes():
        outbox = runtime.outbox
        if isinstance(outbox, InspectedOutbox):
            found.setdefault(id(outbox), outbox)
    return list(found.values())


def local_handlers() -> list[LocalHandler]:
    return [handler for handler in all_handlers() if isinstance(handler, LocalHandler)]


def forwarders() -> list[ForwardHandler]:
    """Handlers forwarding to a broker: every :class:`~fastapi_events.delivery.ForwardHandler`, including the
    per-endpoint ``lanes`` of a ``WebhookForwardHandler``."""
    found = []
    for handler in all_handlers():
        if isinstance(handler, ForwardHandler):
            found.append(handler)
        elif isinstance(handler, Endpoints):
            found += handler.lanes
    return found


def webhook_endpoints() -> list[dict[str, Any]]:
    """Each endpoint of each ``WebhookForwardHandler``: url, events, state (active/disabled), counts."""
    found: list[dict[str, Any]] = []
    for handler in all_handlers():
        if isinstance(handler, Endpoints):
            try:
                found += handler.endpoint_states()
            except Exception:  # a forwarder being shut down
                continue
    return found


def milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _handler_json(recorder: Recorder, runtime: Any, registration: Registration) -> dict[str, Any]:
    """Counts since start: while a page watched (the recorder's) plus while none did (the history's); latencies
    since start from the registration's histogram while a history is kept, else those a page saw."""
    stats = recorder.handlers.get(registration.name)
    handled = failures = 0
    last_error = None
    history = recorder.history
    if history is not None:
        handled = history.handled(id(runtime), lambda name: registration.regex.match(name) is not None)
        failures, last_error = history.failed.get(registration.name, (0, None))
    timed: Latency | HandlerStats | None = registration.latency if history is not None else stats
    if stats is not None:
        handled += stats.handled
        failures += stats.failures
        last_error = stats.last_error or last_error
    return {
        "handled": handled,
        "failures": failures,
        "last_error": last_error,
        "p50_ms": None if timed is None else milliseconds(timed.percentile(0.50)),
        "p99_ms": None if timed is None else milliseconds(timed.percentile(0.99)),
    }


def _channel_json(stats: ChannelStats | None) -> dict[str, Any]:
    if stats is None:
        return {"reachable": None, "batches": 0, "messages": 0, "failures": 0, "last_error": None}
    return {
        "reachable": stats.reachable,
        "batches": stats.batches,
        "messages": stats.messages,
        "failures": stats.failures,
        "last_error": stats.last_error,
    }


def handlers_view(recorder: Recorder) -> dict[str, Any]:
    """``GET /api/handlers``."""
    local = []
    listed: set[int] = set()
    for runtime in mounting_runtimes():
        for handler in runtime.handlers:
            if not isinstance(handler, LocalHandler) or id(handler) in listed:
                continue
            listed.add(id(handler))
            for registration in handler.registrations:
                steps = registration.plan.steps
                local.append(
                    {
                        "pattern": registration.pattern,
                        "function": registration.name,
                        "dependencies": [qualified_name(step.call) for step in steps[:-1]],
                        **_handler_json(recorder, runtime, registration),
                    }
                )
    forwarding = []
    for forwarder in forwarders():
        transport = forwarder.transport
        system, destination = str(transport.system), str(transport.destination)
        try:
            stats = forwarder.stats
            counts = {
                "queued": stats.queued,
                "delivered": stats.delivered,
                "retried": stats.retried,
                "dead_lettered": stats.dead_lettered,
                "dropped": stats.dropped,
            }
        except Exception:  # a forwarder being shut down
            counts = {}
        forwarding.append(
            {
                "handler": repr(forwarder),
                "system": system,
                "destination": destination,
                "spool_path": forwarder.spool_path,
                **counts,
                **_channel_json(recorder.channels.get(("forwarder", system, destination))),
            }
        )
    consumers = []
    for (kind, system, destination), channel in list(recorder.channels.items()):
        if kind != "consumer":
            continue
        lag = {part: n for (s, d, part), n in list(recorder.lag.items()) if s == system and d == destination}
        consumers.append({"system": system, "destination": destination, "lag": lag, **_channel_json(channel)})
    relays = [
        {
            "outbox": repr(outbox),
            "table": outbox.table_name,
            "relay": bool(outbox.relay),
        }
        for outbox in outboxes()
    ]
    return {
        "watching_since": recorder.watching_since,
        "local": local,
        "forwarders": forwarding,
        "consumers": consumers,
        "outboxes": relays,
        "webhooks": webhook_endpoints(),
    }


__all__ = [
    "Endpoints",
    "InspectedOutbox",
    "ScheduledItem",
    "all_handlers",
    "forwarders",
    "handlers_view",
    "local_handlers",
    "milliseconds",
    "mounting_runtimes",
    "outboxes",
    "runtime_ids",
    "webhook_endpoints",
]
