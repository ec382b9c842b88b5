"""What the inspector keeps while no page is open, so that a page opened later starts from what happened.

Three hooks, each a closure over this object's bounded containers (never over the recorder, so that a dropped
inspector takes its hooks with it):

- on dispatch: the event, its time and the middleware it went through, into a ring of the last ``size`` events,
  and a count per event name (at most ``MAX_KEYS`` names per middleware);
- on a handler failure (the failure path only): the error, for the event's outcome and the handler's counters;
- on a dead letter: the notification, into the recorder's own list;
- around a forwarder's batch send: the destination's counters (reachable, batches, failures), also the recorder's.

Successful handler runs cost nothing here: which functions handled an event follows from its name and the
middleware's registrations. Latencies are measured only while a page is open (the recorder's ``on_handle`` hook).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .. import _hooks
from .._names import event_name_str
from .._runtime import event_store
from ..typing import Event
from ._stats import MAX_KEYS, Channels, describe_error

_ERROR_CHARS = 500


class History:
    """The ring of recent events and the counters since start, filled while no page is open."""

    def __init__(self, size: int, dead: deque[dict[str, Any]], channels: Channels) -> None:
        self.size = size
        #: ``(event, unix time, id of the middleware's runtime or None)``, oldest first.
        self.events: deque[tuple[Event, float, int | None]] = deque(maxlen=size)
        #: runtime id -> event name (as dispatched) -> times dispatched while no page was open.
        self.seen: dict[int | None, dict[Any, int]] = {}
        #: ``(event, handler name, error)`` of the failures among :attr:`events`.
        self.failures: deque[tuple[Event, str, str]] = deque(maxlen=size)
        #: handler name -> [failures, last error], while no page was open.
        self.failed: dict[str, list[Any]] = {}
        self.remember = _dispatch_hook(self.events, self.seen)
        self._failure = _failure_hook(self.failures, self.failed)
        self._dead = _dead_hook(dead)
        self._batch = _batch_hook(channels)
        self.recording = False

    def install(self) -> None:
        """Record from now on (dispatches and failures); dead letters and forwarder batches, from the first call
        on and also while a page is open."""
        if self._dead not in _hooks.on_dead_letter:
            _hooks.on_dead_letter.append(self._dead)
            _hooks.on_forward_batch.append(self._batch)
        if not self.recording:
            self.recording = True
            _hooks.on_dispatch.append(self.remember)
            _hooks.on_handler_failure.append(self._failure)

    def pause(self) -> None:
        """A page is open: the recorder's own hooks take over (dead letters stay with this one)."""
        if self.recording:
            self.recording = False
            remove_hook(_hooks.on_dispatch, self.remember)
            remove_hook(_hooks.on_handler_failure, self._failure)

    def uninstall(self) -> None:
        self.pause()
        remove_hook(_hooks.on_dead_letter, self._dead)
        remove_hook(_hooks.on_forward_batch, self._batch)

    def take(self) -> tuple[list[tuple[Event, float, int | None]], dict[int, dict[str, str]]]:
        """The events kept so far (emptying the ring) and, per ``id(event)``, the errors of handlers that failed."""
        events = list(self.events)
        self.events.clear()
        alive = {id(event) for event, _, _ in events}
        errors: dict[int, dict[str, str]] = {}
        for event, handler, error in list(self.failures):
            if id(event) in alive:
                errors.setdefault(id(event), {})[handler] = error
        self.failures.clear()
        return events, errors

    def handled(self, runtime_id: int | None, matches: Callable[[str], bool]) -> int:
        """Events dispatched through ``runtime_id`` while no page was open whose name ``matches``."""
        return sum(count for key, count in list(self.seen.get(runtime_id, {}).items()) if matches(event_name_str(key)))


def _dispatch_hook(ring: deque[tuple[Event, float, int | None]], seen: dict[int | None, dict[Any, int]]) -> Any:
    get_buffer = event_store.get
    now = time.time

    def remember(event: Event) -> Event:
        buffer = get_buffer(None)
        runtime = None if buffer is None else id(buffer.runtime)
        ring.append((event, now(), runtime))
        count_name(seen, runtime, event[0])
        return event

    return remember


def count_name(seen: dict[int | None, dict[Any, int]], runtime: int | None, key: Any) -> None:
    """One more event named ``key`` through ``runtime``. Names are counted as given (an Enum member, usually a
    str): converting them is left to the reader. Two threads racing may lose a count, nothing worse."""
    names = seen.get(runtime)
    if names is None:
        names = seen[runtime] = {}
    try:
        count = names.get(key)
    except TypeError:  # an unhashable "name": dispatch() accepts it, so must this
        key = event_name_str(key)
        count = names.get(key)
    if count is not None:
        names[key] = count + 1
    elif len(names) < MAX_KEYS:
        names[key] = 1


def _failure_hook(failures: deque[tuple[Event, str, str]], failed: dict[str, list[Any]]) -> Any:
    def remember_failure(event: Event, handler: str, exc: BaseException) -> None:
        error = describe_error(exc)
        failures.append((event, handler, error))
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


class _Batch:
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
    def remember_batch(system: str, destination: str, messages: Sequence[Any]) -> _Batch:
        return _Batch(channels, ("forwarder", system, destination), len(messages))

    return remember_batch


def remove_hook(hooks: list[Any], hook: Any) -> None:
    for index, registered in enumerate(hooks):
        if registered == hook:  # bound methods compare equal, not identical
            del hooks[index]
            return


__all__ = ["History", "count_name", "remove_hook"]
