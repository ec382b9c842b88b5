"""The handlers view: what each live middleware runs, joined with what the recorder saw.

Local registrations and forwarders are found through the middlewares' runtimes (the same walk the OpenTelemetry
queue-depth gauge does); consumers show up through the ``on_consume`` hook, since a consumer runs without a
middleware. Outboxes are found on the runtimes too (a middleware's ``outbox=``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import _runtime
from .._report import qualified_name
from ..delivery import ForwardHandler
from ..handlers.local import LocalHandler
from ._recorder import ChannelStats, HandlerStats, Recorder


def all_handlers() -> Iterator[Any]:
    """Every handler object of every live middleware, each once."""
    seen: set[int] = set()
    for runtime in _runtime.all_runtimes():
        for handler in runtime.handlers:
            if id(handler) not in seen:
                seen.add(id(handler))
                yield handler


def outboxes() -> list[Any]:
    """The transactional outboxes of the live middlewares (``EventHandlerASGIMiddleware(..., outbox=...)``)."""
    found: dict[int, Any] = {}
    for runtime in _runtime.all_runtimes():
        outbox = runtime.outbox
        if outbox is not None:
            found.setdefault(id(outbox), outbox)
    return list(found.values())


def local_handlers() -> list[LocalHandler]:
    return [handler for handler in all_handlers() if isinstance(handler, LocalHandler)]


def forwarders() -> list[ForwardHandler]:
    """Handlers forwarding to a broker: every :class:`~fastapi_events.delivery.ForwardHandler`."""
    return [handler for handler in all_handlers() if isinstance(handler, ForwardHandler)]


def _milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _handler_json(stats: HandlerStats | None) -> dict[str, Any]:
    if stats is None:
        return {"handled": 0, "failures": 0, "last_error": None, "p50_ms": None, "p99_ms": None}
    return {
        "handled": stats.handled,
        "failures": stats.failures,
        "last_error": stats.last_error,
        "p50_ms": _milliseconds(stats.percentile(0.50)),
        "p99_ms": _milliseconds(stats.percentile(0.99)),
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
    for handler in local_handlers():
        for registration in handler.registrations:
            steps = registration.plan.steps
            local.append(
                {
                    "pattern": registration.pattern,
                    "function": registration.name,
                    "dependencies": [qualified_name(step.call) for step in steps[:-1]],
                    **_handler_json(recorder.handlers.get(registration.name)),
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
    }


__all__ = ["all_handlers", "forwarders", "handlers_view", "local_handlers", "outboxes"]
