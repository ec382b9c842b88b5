"""``WebhookForwardHandler``: each event POSTed to every endpoint subscribed to it, one delivery lane each."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import math
from collections.abc import Awaitable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._names import event_name_str
from ..codec import encode_payload
from ..delivery import ForwarderStats, ForwardHandler, RetryPolicy, split_options
from ..errors import ConfigurationError
from ..handlers.base import BaseEventHandler
from ..typing import Event
from ._endpoint import WebhookEndpoint
from ._transport import WebhookTransport

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..delivery import DeliveryKwargs

#: Without ``retry=``: an endpoint is a customer's server, which may be down for hours; retried for a day,
#: at most an hour apart, before its events become dead letters (replayable with ``spool replay``).
WEBHOOK_RETRY = RetryPolicy(max_attempts=None, max_elapsed=24 * 3600.0, initial_delay=1.0, max_delay=3600.0)


def _now_iso() -> str:
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    return now.replace("+00:00", "Z")


class _Bodies:
    """Builds the Standard Webhooks body ``{"type", "timestamp", "data"}`` for the delivery layer (its
    serializer). The timestamp is taken once per event, so every endpoint receives the same body."""

    def __init__(self) -> None:
        self.stamps: dict[int, tuple[Event, str]] = {}

    def __call__(self, event: Event) -> bytes:
        found = self.stamps.get(id(event))
        stamp = found[1] if found is not None and found[0] is event else _now_iso()
        return encode_payload({"type": event_name_str(event[0]), "timestamp": stamp, "data": event[1]})


class WebhookForwardHandler(BaseEventHandler):
    """POSTs each event, signed as Standard Webhooks 1.0 says, to every endpoint whose ``events`` match it.

    Each endpoint is a lane of its own - its own :class:`~fastapi_events.delivery.ForwardHandler` and HTTP
    connection pool - so an endpoint that hangs or is down never delays another; at most
    ``endpoint.max_concurrency`` POSTs are in flight to one endpoint. Takes the delivery options every forwarder
    takes (``spool_path``, ``retry``, ``on_dead_letter``, ``flush_timeout``...); with ``spool_path`` the events
    of every endpoint survive a crash in that one file, keyed by endpoint URL, and ``spool list``/``replay``
    show and resend them like any others. Without ``retry`` a failing endpoint is retried for a day
    (:data:`WEBHOOK_RETRY`).

    ``allow_private_networks=False`` refuses endpoints that are or resolve to loopback, private, link-local,
    unspecified, multicast or reserved addresses (checked when connecting, on the address connected to);
    ``timeout`` bounds each POST, in seconds.
    """

    def __init__(
        self,
        endpoints: Iterable[WebhookEndpoint],
        allow_private_networks: bool = False,
        timeout: float = 15.0,
        **options: Unpack[DeliveryKwargs],
    ) -> None:
        delivery, _ = split_options(type(self).__name__, options)
        if delivery.serializer is not None:
            raise ConfigurationError(
                "WebhookForwardHandler sends the Standard Webhooks body {type, timestamp, data}; "
                "shape 'data' through the payload you dispatch instead of a serializer"
            )
        ok = isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and math.isfinite(timeout)
        if not ok or timeout <= 0:
            raise ConfigurationError(f"timeout must be a number of seconds > 0, not {timeout!r}")
        self.allow_private_networks = bool(allow_private_networks)
        self.timeout = float(timeout)
        self._bodies = _Bodies()
        self._lane_options = dataclasses.replace(
            delivery, serializer=self._bodies, retry=delivery.retry or WEBHOOK_RETRY
        )
        self._started = False
        self.endpoints: tuple[WebhookEndpoint, ...] = ()
        self.transports: tuple[WebhookTransport, ...] = ()
        self.lanes: tuple[ForwardHandler, ...] = ()
        for endpoint in endpoints:
            self._append(endpoint)

    def _append(self, endpoint: WebhookEndpoint) -> ForwardHandler:
        if not isinstance(endpoint, WebhookEndpoint):
            raise ConfigurationError(f"endpoints must be WebhookEndpoint instances, not {endpoint!r}")
        if any(known.url == endpoint.url for known in self.endpoints):
            raise ConfigurationError("each webhook url may appear once (its events are spooled under the url)")
        transport = WebhookTransport(endpoint, timeout=self.timeout, allow_private_networks=self.allow_private_networks)
        lane = ForwardHandler(transport, self._lane_options)
        # Each tuple replaced whole, with no await in between: handle_many() always sees matching ones.
        self.endpoints += (endpoint,)
        self.transports += (transport,)
        self.lanes += (lane,)
        return lane

    async def add(self, endpoint: WebhookEndpoint) -> None:
        """Start sending to another endpoint while the app runs (a customer subscribed), in a lane of its own:
        events handed over from now on that match its ``events`` go to it. With ``spool_path``, events an earlier
        process spooled for its URL are delivered too. To stop sending to one, :meth:`disable` it. Call this on
        the app's event loop."""
        lane = self._append(endpoint)
        if self._started:
            await lane.startup()

    async def _each(self, calls: Sequence[Awaitable[None]]) -> None:
        if len(calls) == 1:
            await calls[0]
        elif calls:
            await asyncio.gather(*calls)

    async def startup(self) -> None:
        self._started = True
        await self._each([lane.startup() for lane in self.lanes])

    async def handle(self, event: Event) -> None:
        await self.handle_many([event])

    async def handle_many(self, events: Iterable[Event]) -> None:
        events = list(events)
        names = [event_name_str(event[0]) for event in events]
        stamp = _now_iso()
        stamps = self._bodies.stamps
        for event in events:
            stamps[id(event)] = (event, stamp)
        calls = []
        for transport, lane in zip(self.transports, self.lanes, strict=True):
            wanted = [event for event, name in zip(events, names, strict=True) if transport.endpoint.wants(name)]
            if wanted:
                calls.append(lane.handle_many(wanted))
        # Lanes hand their events over side by side: a hanging endpoint holds up only its own hand-over.
        try:
            await self._each(calls)
        finally:
            for event in events:
                stamps.pop(id(event), None)

    async def flush(self, timeout: float | None = None) -> None:
        await self._each([lane.flush(timeout) for lane in self.lanes])

    async def shutdown(self, timeout: float | None = None) -> None:
        self._started = False
        await self._each([lane.shutdown(timeout) for lane in self.lanes])

    def enable(self, url: str) -> None:
        """Send to ``url`` again after it answered 410 (its owner says it is back) or :meth:`disable`; replay its
        dead letters with ``python -m fastapi_events spool replay`` or the inspector."""
        self._transport(url).enable()

    def disable(self, url: str, reason: str = "disabled by the application") -> None:
        """Stop sending to ``url`` (its owner removed the subscription, say): from now on its events, queued or
        new, are dead-lettered - replayable - with a reason naming the endpoint and ``reason``, as after a 410,
        until :meth:`enable`. Other endpoints are not affected. Held in memory, like the 410 state."""
        self._transport(url).disable(reason)

    def _transport(self, url: str) -> WebhookTransport:
        for transport in self.transports:
            if transport.endpoint.url == url:
                return transport
        raise KeyError(url)

    @property
    def stats(self) -> ForwarderStats:
        """Counts summed over every endpoint (see :meth:`endpoint_states` for each)."""
        totals = [lane.stats for lane in self.lanes]
        names = [field.name for field in dataclasses.fields(ForwarderStats)]
        return ForwarderStats(**{name: sum(getattr(s, name) for s in totals) for name in names})

    def endpoint_states(self) -> list[dict[str, Any]]:
        """Each endpoint: url, ``state`` (``"active"``/``"disabled"``), why it was disabled, and its counts."""
        out = []
        for transport, lane in zip(self.transports, self.lanes, strict=True):
            out.append(
                {
                    "url": transport.endpoint.url,
                    "events": list(transport.endpoint.events),
                    "state": "active" if transport.active else "disabled",
                    "disabled_reason": transport.disabled_reason,
                    **dataclasses.asdict(lane.stats),
                }
            )
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.endpoints)} endpoint(s))"


__all__ = ["WEBHOOK_RETRY", "WebhookForwardHandler"]
