"""``EventStream``: a handler that fans the events it gets out to SSE and WebSocket subscribers."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from .._report import report_failure
from ..errors import ConfigurationError, SerializationError
from ..typing import ASGIApp, Event
from ._access import Authorize
from ._app import StreamApp
from ._entry import StreamEvent, encode
from ._hub import Hub
from ._signals import ShutdownSignals
from ._subscription import EventFilter, Subscription, parse_patterns

if TYPE_CHECKING:
    from ._redis import RedisFeed


class EventStream:
    """Live events for browsers and other subscribers, over Server-Sent Events and WebSockets.

    Add it to the middleware's handlers and mount :attr:`app`::

        stream = EventStream(history=1000)
        app.add_middleware(EventHandlerASGIMiddleware, handlers=[local_handler, stream])
        app.mount("/events", stream.app)

    * ``history``: events kept for resuming (by count); with ``url`` the Redis stream is trimmed to about that.
    * ``url``: ``redis://HOST:PORT/DB/STREAM`` fans out across processes through that Redis stream.
    * ``keepalive``: seconds between SSE keep-alive comments.
    * ``authorize(connection) -> bool`` (sync or async): who may subscribe; without it loopback clients only.
    * ``filter(connection, event) -> bool``: hides events per subscriber.
    * ``queue_size``: events a subscriber may fall behind before it gets ``overflow`` and is disconnected.
    * ``origins``: browser origins allowed to open the WebSocket besides the app's own (``"*"`` for any).
    * ``send_timeout``: seconds a stuck client gets to take its final message before it is dropped.
    """

    def __init__(
        self,
        history: int = 1000,
        *,
        url: str | None = None,
        keepalive: float = 15.0,
        authorize: Authorize | None = None,
        filter: EventFilter | None = None,
        queue_size: int = 1000,
        origins: Collection[str] | None = None,
        send_timeout: float = 5.0,
    ) -> None:
        if history < 0:
            raise ConfigurationError(f"EventStream(history={history}): must be >= 0")
        if queue_size < 1:
            raise ConfigurationError(f"EventStream(queue_size={queue_size}): must be >= 1")
        self.history_size = history
        self.url = url
        self.keepalive = keepalive
        self.authorize = authorize
        self.filter = filter
        self.queue_size = queue_size
        self.origins = origins
        self.send_timeout = send_timeout
        self._hub = Hub(history, ids_from_elsewhere=url is not None)
        self._position = 0
        self._feed: RedisFeed | None = None
        if url is not None:
            from ._redis import RedisFeed  # redis is an optional extra

            self._feed = RedisFeed(url, self._hub, history)
        self._signals = ShutdownSignals(self._hub.close_all)
        # Also before every subscription: servers may run without lifespan, so startup() may never come.
        self._hub.prepare = self._prepare
        self.app: ASGIApp = StreamApp(self)

    # -- the handler protocol -------------------------------------------------------------------------------------

    async def handle(self, event: Event) -> None:
        await self.handle_many((event,))

    async def handle_many(self, events: Iterable[Event]) -> None:
        encoded: list[tuple[str, bytes]] = []
        for event in events:
            try:
                encoded.append(encode(event))
            except SerializationError as exc:
                report_failure(event, self, exc)  # this event only; the others still flow
        if not encoded:
            return
        if self._feed is not None:
            try:
                await self._feed.publish(encoded)
            except Exception as exc:
                for event in events:
                    report_failure(event, self, exc)
            return
        entries = []
        for name, data in encoded:
            self._position += 1
            position = self._position
            entries.append(StreamEvent((position, 0), str(position), name, data))
        self._hub.publish(entries)

    async def startup(self) -> None:
        self._hub.closed = False
        await self._prepare()

    async def _prepare(self) -> None:
        self._signals.install()
        if self._feed is not None:
            await self._feed.start()

    async def flush(self, timeout: float | None = None) -> None:
        return None

    async def shutdown(self, timeout: float | None = None) -> None:
        self._hub.close_all()
        self._signals.uninstall()
        if self._feed is not None:
            await self._feed.stop()

    # -- in-process access (the inspector, tests) -----------------------------------------------------------------

    def subscribe(
        self,
        events: str | Iterable[str] | None = None,
        *,
        last_event_id: str | None = None,
        replay: bool = False,
        connection: Any = None,
        queue_size: int | None = None,
    ) -> Subscription:
        """A subscription to events matching ``events`` (fnmatch patterns; none = all), as SSE clients get them.

        Use as ``async with stream.subscribe("order.*") as subscription: async for event in subscription:``.
        ``last_event_id`` resumes after that id, ``replay=True`` starts with the whole history. ``filter=`` of the
        stream applies with ``connection`` as its first argument.
        """
        return Subscription(
            self._hub,
            parse_patterns(events),
            maxsize=queue_size or self.queue_size,
            last_event_id=last_event_id,
            replay=replay,
            connection=connection,
            event_filter=self.filter,
        )

    @property
    def history(self) -> tuple[StreamEvent, ...]:
        """The events kept for resuming, oldest first (with ``url``: as far as this process has read them)."""
        return tuple(self._hub.entries)

    @property
    def subscriber_count(self) -> int:
        return len(self._hub.subscriptions)

    def close_subscribers(self) -> None:
        """End every open stream now; clients may reconnect (browsers' EventSource does, and resumes)."""
        self._hub.close_all(for_good=False)

    def __repr__(self) -> str:
        where = self.url or f"memory, history={self.history_size}"
        return f"EventStream({where}, {self.subscriber_count} subscriber(s))"


__all__ = ["EventStream"]
