"""What the inspector keeps while no page is open, so that a page opened later starts from what happened.

Hooks, each a closure over this object's bounded containers (never over the recorder, so that a dropped
inspector takes its hooks with it):

- once per batch of events a middleware hands to its handlers (a request's events): the batch, its time and the
  middleware, into a ring holding the last ``size`` events (and the rest of the oldest batch), and a count per
  sequence of names (a request's), added up per name (at most ``MAX_KEYS`` per middleware) when read - a call per
  request, not per event;
- on a handler failure (the failure path only): the error, for the event's outcome and the handler's counters,
  and for the consumer's when a consumer was handling a message;
- on a dead letter: the notification, into the recorder's own list;
- around a forwarder's batch send and a consumer's message: the destination's or source's counters (reachable,
  batches, messages, failures), and a consumer's lag, also the recorder's.

Which functions handled an event follows from its name and the middleware's registrations, so a successful run
needs no hook. Its duration is taken by ``LocalHandler`` itself while :data:`~fastapi_events._hooks.time_handlers`
holds this history's token: two clock reads and one bucket count into the registration's fixed-size histogram
(:mod:`fastapi_events._latency`), which gives p50 and p99 since start, page open or not.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from operator import itemgetter
from typing import Any

from .. import _hooks
from .._names import event_name_str
from ..typing import Event
from ._stats import MAX_KEYS, Channels, describe_error

_ERROR_CHARS = 500

# Set around a consumer's handling of one message: its handlers' failures count for the consumer, and the events
# they see are labelled with it.
consuming: ContextVar[tuple[str, str, str] | None] = ContextVar("fastapi_events_inspector_consuming", default=None)


class History:
    """The ring of recent events and the counters since start, filled while no page is open."""

    def __init__(
        self, size: int, dead: deque[dict[str, Any]], channels: Channels, lag: dict[tuple[str, str, str], int]
    ) -> None:
        self.size = size
        #: ``(events, unix time, id of the middleware's runtime)`` per batch handed to handlers, oldest first.
        self.batches: deque[tuple[Sequence[Event], float, int | None]] = deque()
        self._held = [0]  # events in :attr:`batches`
        # runtime id -> event name (as dispatched) -> times, and batches counted by their names' sequence, not
        # added up yet (see seen()).
        self._counted: dict[int | None, Counter[Any]] = {}
        self._signatures: dict[tuple[int | None, tuple[Any, ...]], list[int]] = {}
        self._lengths: deque[int] = deque()  # of the batches in the ring, oldest first
        #: ``(event, handler name, error)`` of the failures among :attr:`events`.
        self.failures: deque[tuple[Event, str, str]] = deque(maxlen=size)
        #: handler name -> [failures, last error], while no page was open.
        self.failed: dict[str, list[Any]] = {}
        self.remember = _events_hook(self.batches, self._lengths, self._held, size, self._counted, self._signatures)
        self._failure = _failure_hook(self.failures, self.failed, channels)
        self._dead = _dead_hook(dead)
        self._batch = _batch_hook(channels)
        self._consume = _consume_hook(channels)
        self._lag = lag_hook(lag)
        self._timing = object()  # this history's token in _hooks.time_handlers
        self.recording = False

    def install(self) -> None:
        """Record from now on (dispatches and failures); dead letters, forwarder batches, consumed messages and
        handler run times, from the first call on and also while a page is open."""
        if self._dead not in _hooks.on_dead_letter:
            _hooks.on_dead_letter.append(self._dead)
            _hooks.on_forward_batch.append(self._batch)
            _hooks.on_consume.append(self._consume)
            _hooks.on_consumer_lag.append(self._lag)
            _hooks.time_handlers.append(self._timing)
        if not self.recording:
            self.recording = True
            _hooks.on_events.append(self.remember)
            _hooks.on_handler_failure.append(self._failure)

    def pause(self) -> None:
        """A page is open: the recorder's own hooks take over (dead letters stay with this one)."""
        if self.recording:
            self.recording = False
            remove_hook(_hooks.on_events, self.remember)
            remove_hook(_hooks.on_handler_failure, self._failure)

    def uninstall(self) -> None:
        self.pause()
        remove_hook(_hooks.on_dead_letter, self._dead)
        remove_hook(_hooks.on_forward_batch, self._batch)
        remove_hook(_hooks.on_consume, self._consume)
        remove_hook(_hooks.on_consumer_lag, self._lag)
        remove_hook(_hooks.time_handlers, self._timing)

    def take(self) -> tuple[list[tuple[Event, float, int | None]], dict[int, dict[str, str]]]:
        """The events kept so far (emptying the ring) and, per ``id(event)``, the errors of handlers that failed."""
        batches = list(self.batches)
        self.batches.clear()
        self._lengths.clear()
        self._held[0] = 0
        events = [(event, at, runtime) for batch, at, runtime in batches for event in batch][-self.size :]
        alive = {id(event) for event, _, _ in events}
        errors: dict[int, dict[str, str]] = {}
        for event, handler, error in list(self.failures):
            if id(event) in alive:
                errors.setdefault(id(event), {})[handler] = error
        self.failures.clear()
        return events, errors

    def handled(self, runtime_id: int | None, matches: Callable[[str], bool]) -> int:
        """Events dispatched through ``runtime_id`` while no page was open whose name ``matches``."""
        names = self.seen().get(runtime_id, Counter())
        return sum(count for key, count in names.items() if matches(event_name_str(key)))

    def seen(self) -> dict[int | None, Counter[Any]]:
        """Runtime id -> event name (as dispatched) -> times handed to handlers while no page was open.

        The names of a batch are added up here, or once ``_SIGNATURES`` sequences of names were seen: a call per
        batch stays cheap."""
        add_up(self._signatures, self._counted)
        return {runtime: Counter(names) for runtime, names in list(self._counted.items())}

    @property
    def held(self) -> int:
        """Events in the ring (``size`` and the rest of its oldest batch, once that many went by)."""
        return self._held[0]


#: Distinct ``(runtime, names of a batch's events)`` counted as such before being added up per name.
_SIGNATURES = 1024


def _events_hook(
    ring: deque[tuple[Sequence[Event], float, int | None]],
    lengths: deque[int],
    held: list[int],
    size: int,
    counted: dict[int | None, Counter[Any]],
    signatures: dict[tuple[int | None, tuple[Any, ...]], list[int]],
) -> Any:
    now = time.time

    def remember(runtime: Any, events: Sequence[Event]) -> None:
        runtime_id = id(runtime)
        # Requests mostly repeat the same few sequences of names: a batch is counted as one, its names later.
        try:
            key = (runtime_id, tuple(map(_name_of, events)))
            times = signatures.get(key)  # a list, so that the key (ten names, say) is hashed once
            if times is None:
                if len(signatures) >= _SIGNATURES:
                    add_up(signatures, counted)
                times = signatures[key] = [0]
            times[0] += 1
        except TypeError:  # an unhashable "name": dispatch() accepts it, so must this
            for event in events:
                count_name(counted, runtime_id, event[0])
        if len(events) > size:
            events = events[-size:]
        ring.append((events, now(), runtime_id))
        total = held[0] + len(events)
        # Holding more than needed costs more than this check: the app's new events land in memory the ring keeps
        # out of the caches. The lengths are kept apart, so that deciding costs no read of the old batch.
        lengths.append(len(events))
        while total - lengths[0] >= size:
            total -= lengths.popleft()
            ring.popleft()
        held[0] = total

    return remember


def add_up(
    signatures: dict[tuple[int | None, tuple[Any, ...]], list[int]], counted: dict[int | None, Counter[Any]]
) -> None:
    """Add the batches counted by their names' sequence to the counts per name (at most ``MAX_KEYS`` names per
    runtime: names built from data stop being counted, the first ones go on)."""
    for (runtime, names), (times,) in list(signatures.items()):
        counter = counted.get(runtime)
        if counter is None:
            counter = counted[runtime] = Counter()
        for name in names:
            if name in counter or len(counter) < MAX_KEYS:
                counter[name] += times
    signatures.clear()


_name_of = itemgetter(0)


def count_name(seen: dict[int | None, Counter[Any]], runtime: int | None, key: Any) -> None:
    """One more event named ``key`` through ``runtime``. Names are counted as given (an Enum member, usually a
    str): converting them is left to the reader. Two threads racing may lose a count, nothing worse."""
    names = seen.get(runtime)
    if names is None:
        names = seen[runtime] = Counter()
    try:
        count = names.get(key)
    except TypeError:  # an unhashable "name": dispatch() accepts it, so must this
        key = event_name_str(key)
        count = names.get(key)
    if count is not None:
        names[key] = count + 1
    elif len(names) < MAX_KEYS:
        names[key] = 1


def _failure_hook(failures: deque[tuple[Event, str, str]], failed: dict[str, list[Any]], channels: Channels) -> Any:
    def remember_failure(event: Event, handler: str, exc: BaseException) -> None:
        error = describe_error(exc)
        failures.append((event, handler, error))
        source = consuming.get()
        if source is not None:  # the consumer catches it (retry, dead letter): it counts for the consumer
            channels.failed(source, error)
        counts = failed.get(handler)
        if counts is None:
            if len(failed) >= MAX_KEYS:
                return
            counts = failed[handler] = [0, None]
        counts[0] += 1
        counts[1] = error

    return remember_failure


def _dead_hook(dead: deque[dict[str, Any]]) -> Any:
    def remember_dead_letter(event_name: str, where: str, reason: str) -> None:
        dead.append({"time": time.time(), "event": event_name, "where": where, "reason": reason[:_ERROR_CHARS]})

    return remember_dead_letter


class Batch:
    """Around a forwarder's send of one batch: counts it for the destination, failed or not."""

    __slots__ = ("_channels", "_key", "_size")

    def __init__(self, channels: Channels, key: tuple[str, str, str], size: int) -> None:
        self._channels = channels
        self._key = key
        self._size = size

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._channels.done(self._key, self._size, exc)


def _batch_hook(channels: Channels) -> Any:
    def remember_batch(system: str, destination: str, messages: Sequence[Any]) -> Batch:
        return Batch(channels, ("forwarder", system, destination), len(messages))

    return remember_batch


class Consumed:
    """Around a consumer's handling of one message: labels what runs inside with the source, then counts it."""

    __slots__ = ("_channels", "_key", "_token")

    def __init__(self, channels: Channels | None, key: tuple[str, str, str]) -> None:
        self._channels = channels
        self._key = key
        self._token: Any = None

    def __enter__(self) -> None:
        self._token = consuming.set(self._key)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        consuming.reset(self._token)
        if self._channels is not None:
            self._channels.done(self._key, 1, exc)


def _consume_hook(channels: Channels) -> Any:
    def remember_message(
        system: str, destination: str, message_id: str, event_name: str, headers: Mapping[str, str]
    ) -> Consumed:
        return Consumed(channels, ("consumer", system, destination))

    return remember_message


def lag_hook(lag: dict[tuple[str, str, str], int]) -> Any:
    def remember_lag(system: str, destination: str, partition: str, backlog: int) -> None:
        key = (system, destination, partition)
        if key in lag or len(lag) < MAX_KEYS:
            lag[key] = backlog

    return remember_lag


def remove_hook(hooks: list[Any], hook: Any) -> None:
    for index, registered in enumerate(hooks):
        if registered == hook:  # bound methods compare equal, not identical
            del hooks[index]
            return


__all__ = ["Batch", "Consumed", "History", "add_up", "consuming", "count_name", "lag_hook", "remove_hook"]
