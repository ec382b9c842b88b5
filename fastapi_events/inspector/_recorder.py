"""What the inspector remembers about live traffic, fed by the same hooks as OpenTelemetry (``_hooks``).

Recording is on only while someone watches: the first request to the inspector installs the hooks, and they
remove themselves once no request came for ``idle_after`` seconds. With no page open the hot paths therefore
see empty hook lists and pay nothing. Everything kept is bounded: a ring of recent events, a ring of latencies
per handler, a few minutes of per-second counts.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from .. import _hooks
from .._names import event_name_str
from ..typing import Event

_monotonic = time.monotonic
_time = time.time

#: Seconds of per-second event counts kept for the chart.
RATE_WINDOW = 300
_LATENCY_SAMPLES = 1024
_MAX_KEYS = 4096  # distinct handler names / event names / destinations remembered
_ERROR_CHARS = 500

# Set around a consumer's handling of one message, so that the events its handlers see are labelled with it.
_consuming: ContextVar[tuple[str, str, str] | None] = ContextVar("fastapi_events_inspector_consuming", default=None)


#: One handler function handling one event: ``(handler, seconds, error or None)`` (a tuple: made per handler call).
HandlerRun = tuple[str, float, "str | None"]


class EventRecord:
    __slots__ = ("event", "name", "runs", "seq", "source", "time")

    def __init__(self, seq: int, event: Event, name: str, source: str) -> None:
        self.seq = seq
        self.time = _time()
        self.event = event
        self.name = name
        self.source = source
        self.runs: list[HandlerRun] = []


class HandlerStats:
    __slots__ = ("failures", "handled", "last_error", "latencies")

    def __init__(self) -> None:
        self.handled = 0
        self.failures = 0
        self.last_error: str | None = None
        self.latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)

    def add(self, seconds: float, error: str | None) -> None:
        self.handled += 1
        self.latencies.append(seconds)
        if error is not None:
            self.failures += 1
            self.last_error = error

    def percentile(self, fraction: float) -> float | None:
        samples = sorted(self.latencies)
        if not samples:
            return None
        return samples[min(len(samples) - 1, int(fraction * len(samples)))]


class ChannelStats:
    """A forwarder destination or a consumer source, as seen through the hooks."""

    __slots__ = ("batches", "failures", "last_error", "messages", "reachable")

    def __init__(self) -> None:
        self.batches = 0
        self.messages = 0
        self.failures = 0
        self.reachable: bool | None = None
        self.last_error: str | None = None


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]


class _HandleScope:
    __slots__ = ("_handler", "_record", "_recorder", "_start")

    def __init__(self, recorder: Recorder, event: Event, handler: str) -> None:
        self._recorder = recorder
        self._handler = handler
        self._record = recorder.record_for(event)

    def __enter__(self) -> None:
        self._start = _monotonic()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._recorder.handled(self._record, self._handler, _monotonic() - self._start, exc)


class _ChannelScope:
    __slots__ = ("_key", "_recorder", "_size", "_start", "_token")

    def __init__(self, recorder: Recorder, key: tuple[str, str, str], size: int) -> None:
        self._recorder = recorder
        self._key = key
        self._size = size
        self._token: Any = None

    def __enter__(self) -> None:
        if self._key[0] == "consumer":
            self._token = _consuming.set(self._key)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._token is not None:
            _consuming.reset(self._token)
        self._recorder.channel_done(self._key, self._size, exc)


class Recorder:
    """The ring buffers and counters behind the inspector's live views."""

    def __init__(self, *, max_events: int = 500, idle_after: float = 60.0) -> None:
        self.max_events = max_events
        self.idle_after = idle_after
        self.watching_since: float | None = None
        self.events: deque[EventRecord] = deque(maxlen=max_events)
        self.handlers: dict[str, HandlerStats] = {}
        self.channels: dict[tuple[str, str, str], ChannelStats] = {}
        self.names: dict[str, int] = {}  # event name -> times seen while watching
        self.lag: dict[tuple[str, str, str], int] = {}
        self.dead: deque[dict[str, Any]] = deque(maxlen=200)  # dead-letter notifications
        self.rate: deque[list[int]] = deque(maxlen=RATE_WINDOW)  # [unix second, events dispatched]
        self._seq = 0
        self._counter = itertools.count(1)
        self._by_id: dict[int, EventRecord] = {}
        self._lock = threading.Lock()
        self._last_seen = 0.0
        self._installed = False

    # -- watching ---------------------------------------------------------------------------------------------
    def touch(self) -> None:
        """A client asked for data: record (again) from now on, until it stays away for ``idle_after`` s."""
        self._last_seen = _monotonic()
        if not self._installed:
            self._installed = True
            self.watching_since = _time()
            # In place: the hot paths hold aliases of these lists.
            _hooks.on_handle.append(self.on_handle)
            _hooks.on_forward_batch.append(self.on_forward_batch)
            _hooks.on_consume.append(self.on_consume)
            _hooks.on_consumer_lag.append(self.on_consumer_lag)
            _hooks.on_dead_letter.append(self.on_dead_letter)
        # Last, so that the event seen here is the one handlers get (tracing wraps it in a new tuple).
        dispatch_hooks = _hooks.on_dispatch
        if not dispatch_hooks or dispatch_hooks[-1] != self.on_dispatch:
            _remove(dispatch_hooks, self.on_dispatch)
            dispatch_hooks.append(self.on_dispatch)

    @property
    def watching(self) -> bool:
        return self._installed

    def stop(self) -> None:
        """Remove the per-event hooks; what was recorded stays readable."""
        if not self._installed:
            return
        self._installed = False
        self.watching_since = None
        _remove(_hooks.on_dispatch, self.on_dispatch)
        _remove(_hooks.on_handle, self.on_handle)
        _remove(_hooks.on_forward_batch, self.on_forward_batch)
        _remove(_hooks.on_consume, self.on_consume)
        _remove(_hooks.on_consumer_lag, self.on_consumer_lag)
        _remove(_hooks.on_dead_letter, self.on_dead_letter)

    def _idle(self) -> bool:
        if _monotonic() - self._last_seen > self.idle_after:
            self.stop()
            return True
        return False

    # -- hooks ------------------------------------------------------------------------------------------------
    def on_dispatch(self, event: Event) -> Event:
        if self._idle():
            return event
        self._add(event, "dispatch")
        return event

    def _add(self, event: Event, source: str) -> EventRecord:
        # No lock: each step is one atomic operation under the GIL (events come from worker threads too); the
        # chart may miss a count when two threads race on the same second, nothing else can go wrong.
        name = event_name_str(event[0])
        record = EventRecord(next(self._counter), event, name, source)
        self._seq = record.seq
        self.events.append(record)  # the deque drops the oldest
        by_id = self._by_id
        by_id[id(event)] = record  # the record holds the event: its id cannot be reused meanwhile
        if len(by_id) > 2 * self.max_events:
            self._by_id = {id(r.event): r for r in self._snapshot()}
        second = int(record.time)
        rate = self.rate
        if rate and rate[-1][0] == second:
            rate[-1][1] += 1
        else:
            rate.append([second, 1])
        names = self.names
        if name in names:
            names[name] += 1
        elif len(names) < _MAX_KEYS:
            names[name] = 1
        return record

    def _snapshot(self) -> tuple[EventRecord, ...]:
        while True:
            try:
                return tuple(self.events)
            except RuntimeError:  # appended to by another thread while copying
                continue

    def record_for(self, event: Event) -> EventRecord:
        record = self._by_id.get(id(event))
        if record is not None and record.event is event:
            return record
        consuming = _consuming.get()
        if consuming is not None:  # received from a broker: it enters the tail here
            return self._add(event, f"{consuming[1]}:{consuming[2]}")
        # Dispatched before recording started, or already pushed out of the ring by newer events: its handler
        # runs still count, but it does not enter the tail (again).
        return EventRecord(0, event, event_name_str(event[0]), "dispatch")

    def on_handle(self, event: Event, handler: str) -> _HandleScope:
        # No idleness check here: every dispatched event passes on_dispatch first, which does it.
        return _HandleScope(self, event, handler)

    def handled(self, record: EventRecord, handler: str, seconds: float, exc: BaseException | None) -> None:
        error = None if exc is None else describe_error(exc)
        consuming = _consuming.get() if error is not None else None
        with self._lock:
            record.runs.append((handler, seconds, error))
            stats = self.handlers.get(handler)
            if stats is None and len(self.handlers) < _MAX_KEYS:
                stats = self.handlers[handler] = HandlerStats()
            if stats is not None:
                stats.add(seconds, error)
            if consuming is not None:  # the consumer catches it (retry, dead letter): count it for the consumer
                channel = self._channel(consuming)
                if channel is not None:
                    channel.failures += 1
                    channel.last_error = error

    def _channel(self, key: tuple[str, str, str]) -> ChannelStats | None:
        stats = self.channels.get(key)
        if stats is None and len(self.channels) < _MAX_KEYS:
            stats = self.channels[key] = ChannelStats()
        return stats

    def on_forward_batch(self, system: str, destination: str, messages: Sequence[Any]) -> _ChannelScope:
        return _ChannelScope(self, ("forwarder", system, destination), len(messages))

    def on_consume(
        self, system: str, destination: str, message_id: str, event_name: str, headers: Mapping[str, str]
    ) -> _ChannelScope:
        self._idle()
        return _ChannelScope(self, ("consumer", system, destination), 1)

    def channel_done(self, key: tuple[str, str, str], size: int, exc: BaseException | None) -> None:
        with self._lock:
            stats = self._channel(key)
            if stats is None:
                return
            stats.batches += 1
            stats.messages += size
            if exc is None:
                stats.reachable = True
            else:
                stats.failures += 1
                stats.last_error = describe_error(exc)
                # A consumer's handler failing says nothing about the broker; a failed send does.
                if key[0] == "forwarder":
                    stats.reachable = False

    def on_consumer_lag(self, system: str, destination: str, partition: str, lag: int) -> None:
        if len(self.lag) < _MAX_KEYS:
            self.lag[(system, destination, partition)] = lag

    def on_dead_letter(self, event_name: str, where: str, reason: str) -> None:
        self.dead.append({"time": _time(), "event": event_name, "where": where, "reason": reason[:_ERROR_CHARS]})

    # -- reading ----------------------------------------------------------------------------------------------
    def since(self, seq: int) -> list[EventRecord]:
        return [record for record in self._snapshot() if record.seq > seq]

    @property
    def last_seq(self) -> int:
        return self._seq


def _remove(hooks: list[Any], hook: Any) -> None:
    for index, registered in enumerate(hooks):
        if registered == hook:  # bound methods compare equal, not identical
            del hooks[index]
            return


__all__ = ["RATE_WINDOW", "EventRecord", "HandlerStats", "Recorder", "describe_error"]
