"""The handlers view: what the mounting app's middleware runs, joined with what the recorder saw.

Local registrations, forwarders and outboxes (a middleware's ``outbox=``) are found through the runtime of the
``EventHandlerASGIMiddleware`` wrapping the inspector's own request: the inspector describes the app it is mounted
in, not every app of the process. Served outside any middleware (on its own port, say) it describes every live
middleware of the process. Consumers show up through the ``on_consume`` hook, since a consumer runs without a
middleware.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import _runtime
from .._report import qualified_name
from ..delivery import ForwardHandler
from ..handlers.local import LocalHandler, Registration
from ._recorder import Recorder
from ._stats import ChannelStats


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


def outboxes() -> list[Any]:
    """The transactional outbox of the mounting app's middleware (``EventHandlerASGIMiddleware(..., outbox=...)``)."""
    found: dict[int, Any] = {}
    for runtime in mounting_runtimes():
        outbox = runtime.outbox
        if outbox is not None:
            found.setdefault(id(outbox), outbox)
    return list(found.values())


def local_handlers() -> list[LocalHandler]:
    return [handler for handler in all_handlers() if isinstance(handler, LocalHandler)]


def forwarders() -> list[ForwardHandler]:
    """Handlers forwarding to a broker: every :class:`~fastapi_events.delivery.ForwardHandler`, including the
    per-endpoint ``lanes`` of a ``WebhookForwardHandler``."""
    found = []
    for handler in all_handlers():
        for candidate in (*getattr(handler, "lanes", ()), handler):
            if isinstance(candidate, ForwardHandler):
                found.append(candidate)
    return found


def webhook_endpoints() -> list[dict[str, Any]]:
    """Each endpoint of each ``WebhookForwardHandler``: url, events, state (active/disabled), counts."""
    found: list[dict[str, Any]] = []
    for handler in all_handlers():
        states = getattr(handler, "endpoint_states", None)
        if callable(states):
            try:
                found += states()
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
    timed: Any = registration.latency if history is not None else stats
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
            "table": getattr(outbox, "table_name", None),
            "relay": bool(getattr(outbox, "relay", False)),
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
