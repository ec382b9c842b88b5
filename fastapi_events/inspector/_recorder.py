"""What the inspector remembers about live traffic, fed by the same hooks as OpenTelemetry (``_hooks``).

Detailed recording (every handler run with its latency, the rate chart, forwarder and consumer channels) is on
only while someone watches: the first request to the inspector installs its hooks, and they remove themselves
once no request came for ``idle_after`` seconds. Meanwhile :class:`~._history.History` keeps, at a fraction of
the cost, the last events with their outcomes and counts since start (handler run times, forwarder and consumer
counters included), which a page starts from when it opens (``history=0`` turns that off: the hot paths then
see empty hook lists). Everything kept is bounded: rings of recent events, a ring of latencies per handler, a few
minutes of per-second counts.

The live stream's ``EventStream`` is not used for the tail: it is a handler the app has to put in its middleware,
while the inspector must work by being mounted alone; the hooks see every middleware's events without wiring.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from .. import _hooks, _runtime
from .._event_meta import IdentifiedEvent
from .._names import event_name_str
from ..handlers.local import LocalHandler
from ..typing import Event
from ._history import Batch, Consumed, History, consuming, count_name, lag_hook, remove_hook
from ._stats import MAX_KEYS, Channels, ChannelStats, HandlerStats, describe_error

_monotonic = time.monotonic
_time = time.time

#: Seconds of per-second event counts kept for the chart.
RATE_WINDOW = 300
_MAX_KEYS = MAX_KEYS  # distinct handler names / event names / destinations remembered
_ERROR_CHARS = 500
_MATCH_WINDOW = 200  # recent records searched for the dispatch an outbox delivery belongs to
_BACKLOG = 4  # events (and handler runs) queued between two reads, in multiples of max_events
_NULL: AbstractContextManager[None] = nullcontext()


#: One handler function handling one event: ``(handler, seconds, error or None)`` (a tuple: made per handler call);
#: seconds is None for runs recorded while no page was open.
HandlerRun = tuple[str, "float | None", "str | None"]


class EventRecord:
    __slots__ = ("event", "name", "runs", "runtime", "seq", "source", "time", "version")

    def __init__(self, seq: int, event: Event, name: str, source: str, at: float, runtime: int | None = None) -> None:
        self.seq = seq
        self.runtime = runtime  # id of the runtime (middleware) it was dispatched through, if any
        self.version = seq  # the recorder's change counter when this record last changed
        self.time = at  # unix time
        self.event = event
        self.name = name
        self.source = source
        self.runs: list[HandlerRun] = []


class _HandleScope:
    __slots__ = ("_event", "_handler", "_recorder", "_start")

    def __init__(self, recorder: Recorder, event: Event, handler: str) -> None:
        self._recorder = recorder
        self._event = event
        self._handler = handler

    def __enter__(self) -> None:
        self._start = _monotonic()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._recorder.handled(self._event, self._handler, _monotonic() - self._start, exc)


class Recorder:
    """The ring buffers and counters behind the inspector's live views.

    The hooks only append to two bounded queues (and count); the tail is built from them when a client reads,
    so that a page being open costs the app as little as possible per event.
    """

    def __init__(self, *, max_events: int = 500, idle_after: float = 60.0, history: int = 1000) -> None:
        self.max_events = max_events
        self.idle_after = idle_after
        self.watching_since: float | None = None
        self.events: deque[EventRecord] = deque(maxlen=max_events)
        self.handlers: dict[str, HandlerStats] = {}
        # runtime id -> event name (as dispatched) -> times seen while watching
        self._seen: dict[int | None, Counter[Any]] = {}
        self.lag: dict[tuple[str, str, str], int] = {}
        self.on_consumer_lag = lag_hook(self.lag)
        self.dead: deque[dict[str, Any]] = deque(maxlen=200)  # dead-letter notifications
        self._rate: deque[list[int]] = deque(maxlen=RATE_WINDOW)  # [monotonic second, events dispatched]
        # Not yet in the tail: (event, monotonic time) and (event, handler, seconds, error, consumer key).
        self._fresh: deque[tuple[Event, float, int | None]] = deque(maxlen=_BACKLOG * max_events)
        self._runs: deque[tuple[Event, str, float, str | None, tuple[str, str, str] | None]] = deque(
            maxlen=_BACKLOG * max_events
        )
        self._seq = 0
        self._version = 0
        self._by_id: dict[int, EventRecord] = {}
        self._aliases: dict[int, tuple[Event, EventRecord]] = {}  # handled copies of events (outbox, consumers)
        self._lock = threading.Lock()  # counters updated from worker threads (sync handlers)
        self._channels = Channels(self._lock)
        self.channels: dict[tuple[str, str, str], ChannelStats] = self._channels.stats
        self._fold_lock = threading.Lock()
        self._last_seen = 0.0
        self._installed = False
        self.history = History(history, self.dead, self._channels, self.lag) if history > 0 else None
        if self.history is not None:
            self.history.install()
            weakref.finalize(self, self.history.uninstall)

    # -- watching ---------------------------------------------------------------------------------------------
    def touch(self) -> None:
        """A client asked for data: record (again) from now on, until it stays away for ``idle_after`` s."""
        self._last_seen = _monotonic()
        if not self._installed:
            self._installed = True
            self.watching_since = _time()
            if self.history is not None:
                self.history.pause()
                self._take_history()
            # In place: the hot paths hold aliases of these lists.
            _hooks.on_handle.append(self.on_handle)
            _hooks.on_consume.append(self.on_consume)
            if self.history is None:  # else the history's hooks record them, page open or not
                _hooks.on_forward_batch.append(self.on_forward_batch)
                _hooks.on_dead_letter.append(self.on_dead_letter)
                _hooks.on_consumer_lag.append(self.on_consumer_lag)
        # Last, so that the event seen here is the one handlers get (tracing wraps it in a new tuple).
        dispatch_hooks = _hooks.on_dispatch
        if not dispatch_hooks or dispatch_hooks[-1] != self.on_dispatch:
            remove_hook(dispatch_hooks, self.on_dispatch)
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
        remove_hook(_hooks.on_dispatch, self.on_dispatch)
        remove_hook(_hooks.on_handle, self.on_handle)
        remove_hook(_hooks.on_forward_batch, self.on_forward_batch)
        remove_hook(_hooks.on_consume, self.on_consume)
        remove_hook(_hooks.on_consumer_lag, self.on_consumer_lag)
        remove_hook(_hooks.on_dead_letter, self.on_dead_letter)
        if self.history is not None:
            self.history.install()

    def close(self) -> None:
        """Stop recording altogether, history included (the inspector's app is going away)."""
        self.stop()
        if self.history is not None:
            self.history.uninstall()

    def _take_history(self) -> None:
        """Turn what the history kept into the tail's first records, outcomes included."""
        assert self.history is not None
        events, errors = self.history.take()
        runtimes = {id(runtime): runtime for runtime in _runtime.all_runtimes()}
        with self._fold_lock:
            for event, at, runtime_id in events:
                record = self._add(event, at, "dispatch", runtime_id)
                failed = errors.get(id(event), {})
                ran = local_functions(None if runtime_id is None else runtimes.get(runtime_id), record.name)
                record.runs.extend((name, None, failed.get(name)) for name in ran)
                record.runs.extend((name, None, error) for name, error in failed.items() if name not in ran)

    # -- hooks (hot paths: keep them to appends and counts) -----------------------------------------------------
    def on_dispatch(self, event: Event) -> Event:
        now = _monotonic()
        if now - self._last_seen > self.idle_after:
            self.stop()  # the history, installed again, sees this event when it is handed to handlers
            return event
        buffer = _runtime.event_store.get(None)
        runtime = None if buffer is None else id(buffer.runtime)
        self._fresh.append((event, now, runtime))
        # The chart and the catalog count every event, also those the tail has no room for.
        count_name(self._seen, runtime, event[0])
        second = int(now)
        rate = self._rate
        if rate and rate[-1][0] == second:
            rate[-1][1] += 1
        else:
            rate.append([second, 1])
        return event

    def on_handle(self, event: Event, handler: str) -> _HandleScope:
        # No idleness check here: every dispatched event passes on_dispatch first, which does it.
        return _HandleScope(self, event, handler)

    def handled(self, event: Event, handler: str, seconds: float, exc: BaseException | None) -> None:
        error = None if exc is None else describe_error(exc)
        source = consuming.get()
        self._runs.append((event, handler, seconds, error, source))
        with self._lock:
            stats = self.handlers.get(handler)
            if stats is None and len(self.handlers) < _MAX_KEYS:
                stats = self.handlers[handler] = HandlerStats()
            if stats is not None:
                stats.add(seconds, error)
        if error is not None and source is not None:
            # The consumer catches it (retry, dead letter): count it for the consumer.
            self._channels.failed(source, error)

    def on_forward_batch(self, system: str, destination: str, messages: Sequence[Any]) -> Batch:
        return Batch(self._channels, ("forwarder", system, destination), len(messages))

    def on_consume(
        self, system: str, destination: str, message_id: str, event_name: str, headers: Mapping[str, str]
    ) -> AbstractContextManager[None]:
        if _monotonic() - self._last_seen > self.idle_after:
            self.stop()
        if self.history is not None:  # its own hook labels and counts the message, page open or not
            return _NULL
        return Consumed(self._channels, ("consumer", system, destination))

    def on_dead_letter(self, event_name: str, where: str, reason: str) -> None:
        self.dead.append({"time": _time(), "event": event_name, "where": where, "reason": reason[:_ERROR_CHARS]})

    # -- building the tail (when a client reads) ----------------------------------------------------------------
    def fold(self) -> None:
        """Move what the hooks queued into the tail: records, their handler runs, the names seen."""
        with self._fold_lock:
            offset = _time() - _monotonic()
            # Runs queued before the events are drained belong to events queued before them: take only those,
            # so that no run arrives ahead of its event.
            pending_runs = len(self._runs)
            fresh = self._fresh
            while fresh:
                event, at, runtime = fresh.popleft()
                self._add(event, at + offset, "dispatch", runtime)
            runs = self._runs
            for _ in range(pending_runs):
                event, handler, seconds, error, consuming = runs.popleft()
                record = self._record_of_run(event, consuming)
                if record is None:
                    continue  # dispatched before the page opened, or pushed out of the tail since: counted only
                record.runs.append((handler, seconds, error))
                self._version += 1
                record.version = self._version

    def _record_of_run(self, event: Event, consuming: tuple[str, str, str] | None) -> EventRecord | None:
        record = self._by_id.get(id(event))
        if record is not None and record.event is event:
            return record
        alias = self._aliases.get(id(event))
        if alias is not None and alias[0] is event:
            return alias[1]
        if consuming is not None:  # received from a broker: it enters the tail here
            record = self._add(event, _time(), f"{consuming[1]}:{consuming[2]}")
        elif isinstance(event, IdentifiedEvent):
            # Delivered from the transactional outbox: handlers get a copy made after the commit, not the tuple
            # dispatch() saw. It belongs to the oldest recent dispatch of that name and payload not handled yet.
            record = self._dispatched_like(event) or self._add(event, _time(), "outbox")
        else:
            return None
        self._aliases[id(event)] = (event, record)  # the event's other handlers
        if len(self._aliases) > self.max_events:
            del self._aliases[next(iter(self._aliases))]
        return record

    def _dispatched_like(self, event: Event) -> EventRecord | None:
        name = event_name_str(event[0])
        for record in list(self.events)[-_MATCH_WINDOW:]:
            if record.runs or record.source != "dispatch" or record.name != name:
                continue
            try:
                if record.event[1] == event[1]:
                    return record
            except Exception:  # a payload type whose == raises: not this one
                continue
        return None

    def _add(self, event: Event, at: float, source: str, runtime: int | None = None) -> EventRecord:
        name = event_name_str(event[0])
        self._seq += 1
        self._version += 1
        record = EventRecord(self._seq, event, name, source, at, runtime)
        record.version = self._version
        self.events.append(record)  # the deque drops the oldest
        by_id = self._by_id
        by_id[id(event)] = record  # the record holds the event: its id cannot be reused meanwhile
        if len(by_id) > 2 * self.max_events:
            self._by_id = {id(r.event): r for r in self.events}
        if source != "dispatch":  # received from a broker: on_dispatch did not count it
            names = self._seen.setdefault(None, Counter())
            names[event[0]] = names.get(event[0], 0) + 1
        return record

    def changed_since(self, version: int, runtimes: Collection[int] | None = None) -> list[EventRecord]:
        """Records added, or given handler runs, after ``version`` (a previous :attr:`version`), oldest first.

        ``runtimes``: only events dispatched through these middlewares' runtimes (and those of none: received
        from a broker, delivered from an outbox, dispatched outside any request).
        """
        self.fold()
        return [
            record
            for record in self.events
            if record.version > version and (runtimes is None or record.runtime is None or record.runtime in runtimes)
        ]

    def seen(self, runtimes: Collection[int] | None = None) -> dict[str, int]:
        """Event name -> how often it was seen since start (at most ``_MAX_KEYS`` names per middleware)."""
        self.fold()
        seen: dict[str, int] = {}
        counters = [self._seen] if self.history is None else [self._seen, self.history.seen()]
        for counter in counters:
            for runtime, names in list(counter.items()):
                if runtimes is not None and runtime is not None and runtime not in runtimes:
                    continue
                for key, count in list(names.items()):
                    name = event_name_str(key)
                    seen[name] = seen.get(name, 0) + count
        return seen

    @property
    def rate(self) -> list[list[int]]:
        """``[unix second, events dispatched]`` for the last few minutes."""
        offset = _time() - _monotonic()
        return [[int(second + offset), count] for second, count in list(self._rate)]

    @property
    def version(self) -> int:
        return self._version


def local_functions(runtime: Any, name: str) -> list[str]:
    """The names of the local functions a middleware's runtime runs for events named ``name``."""
    if runtime is None:
        return []
    return [
        registration.name
        for handler in runtime.handlers
        if isinstance(handler, LocalHandler)
        for registration in handler.registrations
        if registration.regex.match(name)
    ]


__all__ = ["RATE_WINDOW", "EventRecord", "HandlerStats", "Recorder", "describe_error", "local_functions"]
