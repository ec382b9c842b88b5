"""The handlers view: what each live middleware runs, joined with what the recorder saw.

Local registrations and forwarders are found through the middlewares' runtimes (the same walk the OpenTelemetry
queue-depth gauge does); consumers show up through the ``on_consume`` hook, since a consumer runs without a
middleware. Outbox relays are any handler exposing ``dead_letters()`` (see :mod:`._deadletters`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import _runtime
from .._report import qualified_name
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


def local_handlers() -> list[LocalHandler]:
    return [handler for handler in all_handlers() if isinstance(handler, LocalHandler)]


def forwarders() -> list[Any]:
    """Handlers forwarding to a broker: they have a ``transport`` and ``stats`` (``ForwardHandler``)."""
    return [h for h in all_handlers() if getattr(h, "transport", None) is not None and hasattr(h, "stats")]


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
    for handler in forwarders():
        transport = handler.transport
        system, destination = str(getattr(transport, "system", "")), str(getattr(transport, "destination", ""))
        try:
            stats = handler.stats
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
                "handler": repr(handler),
                "system": system,
                "destination": destination,
                "spool_path": getattr(handler, "spool_path", None),
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
    outboxes = [
        {"handler": repr(handler), **_outbox_stats(handler)}
        for handler in all_handlers()
        if callable(getattr(handler, "dead_letters", None))
    ]
    return {
        "watching_since": recorder.watching_since,
        "local": local,
        "forwarders": forwarding,
        "consumers": consumers,
        "outboxes": outboxes,
    }


def _outbox_stats(handler: Any) -> dict[str, Any]:
    stats = getattr(handler, "stats", None)
    if stats is None:
        return {}
    fields = getattr(stats, "__dataclass_fields__", None)
    if fields is None:
        return {}
    return {name: getattr(stats, name) for name in fields if isinstance(getattr(stats, name), (int, float, str))}


__all__ = ["all_handlers", "forwarders", "handlers_view", "local_handlers"]
