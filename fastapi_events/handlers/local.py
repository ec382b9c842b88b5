"""``LocalHandler``: run registered functions in-process for events whose name matches a pattern."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Sequence
from enum import Enum
from fnmatch import translate
from typing import Any, TypeVar, overload

from .. import _hooks
from .._latency import Latency, clock
from .._names import event_name_str
from .._report import qualified_name, report_failure
from .._threads import submit
from ..typing import Event, EventName
from ._dependencies import EventsDepends, Plan
from .base import Answers, BaseEventHandler, deliver_strict

try:
    from fastapi import Depends
except ImportError:  # pragma: no cover - Starlette-only installs
    Depends = EventsDepends  # type: ignore[assignment]

F = TypeVar("F", bound=Callable[..., Any])

# Telemetry wrappers (OpenTelemetry spans and metrics, the inspector's live page) and whether to time each run
# into its registration's histogram (the inspector's history); the lists are mutated in place, never rebound.
_on_handle = _hooks.on_handle
_timing = _hooks.time_handlers

# Event names are usually a closed set, but a bound keeps names built from data from growing the cache forever.
_MATCH_CACHE_SIZE = 2048


class Registration:
    """One function registered for one pattern, with its dependency plan built at registration time."""

    __slots__ = ("func", "latency", "name", "pattern", "plan", "regex")

    def __init__(self, pattern: str, func: Callable[..., Any]) -> None:
        self.pattern = pattern
        self.regex = re.compile(translate(pattern))
        self.func = func
        self.name = qualified_name(func)
        self.plan = Plan(func)
        #: How long its runs took since something started timing them (see ``_hooks.time_handlers``).
        self.latency = Latency()

    def __repr__(self) -> str:
        return f"<Registration {self.pattern!r} -> {self.name}>"


class LocalHandler(BaseEventHandler):
    """Dispatch events to functions registered with :meth:`register`.

    Patterns are Unix shell-style (``fnmatch``, case-sensitive): ``"user.*"``, ``"*"``. Handlers may be sync or
    async and take FastAPI ``Depends`` parameters. For one request's events every function gets its matching events
    in dispatch order; different functions run concurrently. A function that raises is reported (logger
    ``fastapi_events`` and the middleware's ``on_error``) and does not affect the others.
    """

    def __init__(self) -> None:
        self._registrations: list[Registration] = []
        self._matches: dict[str, tuple[Registration, ...]] = {}

    @overload
    def register(self, _func: F, event_name: EventName = "*") -> F: ...

    @overload
    def register(self, _func: EventName | None = None, event_name: EventName = "*") -> Callable[[F], F]: ...

    def register(self, _func: Any = None, event_name: EventName = "*") -> Any:
        """Register a handler: ``@register``, ``@register(event_name="cat*")``, ``@register("cat*")`` or
        ``register(func, event_name=...)``. Decorators stack and return the function unchanged."""
        if isinstance(_func, (str, Enum)):
            event_name, _func = _func, None

        def decorator(func: F) -> F:
            self._register_handler(event_name, func)
            return func

        if _func is None:
            return decorator
        return decorator(_func)

    def _register_handler(self, event_name: EventName, func: Callable[..., Any]) -> None:
        self._registrations.append(Registration(event_name_str(event_name), func))
        self._matches.clear()

    def unregister(self, func: Callable[..., Any], event_name: EventName | None = None) -> None:
        """Remove ``func`` (for ``event_name`` only, when given)."""
        pattern = None if event_name is None else event_name_str(event_name)
        self._registrations = [
            r for r in self._registrations if not (r.func is func and (pattern is None or r.pattern == pattern))
        ]
        self._matches.clear()

    @property
    def registrations(self) -> tuple[Registration, ...]:
        return tuple(self._registrations)

    def _get_handlers_for_event(self, event_name: EventName) -> tuple[Registration, ...]:
        name = event_name_str(event_name)
        found = self._matches.get(name)
        if found is None:
            found = tuple(r for r in self._registrations if r.regex.match(name))
            if len(self._matches) >= _MATCH_CACHE_SIZE:
                self._matches.clear()
            self._matches[name] = found
        return found

    # -- handling -------------------------------------------------------------------------------------------------

    async def handle(self, event: Event) -> None:
        await self.deliver((event,))

    async def handle_many(self, events: Iterable[Event]) -> None:
        await self.deliver(events if isinstance(events, (list, tuple)) else list(events))

    async def deliver(self, events: Sequence[Event], answers: Answers | None = None) -> None:
        """Run the matching functions; with ``answers``, answer per event for each function (its unit is the
        function's qualified name), and leave out the functions that already have an event."""
        if answers is not None:
            await self._answer(events, answers)
            return
        if len(events) == 1:
            event = events[0]
            registrations = self._get_handlers_for_event(event[0])
            if len(registrations) == 1:
                registration = registrations[0]
                if _on_handle:
                    await _run_one(registration, events)
                    return
                # The most common shape - one event, one function - without a further coroutine frame.
                start = clock() if _timing and registration.latency.due() else 0
                try:
                    try:
                        await registration.plan.run(event)
                    finally:
                        if start:
                            registration.latency.add(clock() - start)
                except Exception as exc:
                    report_failure(event, registration.func, exc)
                return
            work: list[tuple[Registration, Sequence[Event]]] = [(r, (event,)) for r in registrations]
        else:
            grouped: dict[Registration, list[Event]] = {}
            for event in events:
                for registration in self._get_handlers_for_event(event[0]):
                    grouped.setdefault(registration, []).append(event)
            work = [(registration, group) for registration, group in grouped.items()]
        await _run_all(work)

    async def _answer(self, events: Sequence[Event], answers: Answers) -> None:
        # Every function of every event at once: callers that must keep an order give one event per key.
        jobs = [
            (index, registration, event)
            for index, event in enumerate(events)
            for registration in self._get_handlers_for_event(event[0])
            if answers.wants(index, registration.name)
        ]
        if not jobs:
            return
        observed = _on_handle or _timing
        runs = (_observed(r, event) if observed else r.plan.run(event) for _, r, event in jobs)
        results = await asyncio.gather(*runs, return_exceptions=True)
        for (index, registration, event), result in zip(jobs, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                if answers.report:
                    report_failure(event, registration.func, result)
                elif _hooks.on_handler_failure:  # the caller retries it: observers still see the failure
                    _hooks.handler_failed(event, registration.name, result)
                answers.failed(index, result, registration.name)
            else:
                answers.delivered(index, registration.name)

    async def handle_strict(self, event: Event) -> int:
        """Run every function matching ``event`` and return how many matched; raise if any of them failed.

        Consumers use this to acknowledge a message only after all its handlers succeeded.
        """
        return await deliver_strict(self, event)


async def _observed(registration: Registration, event: Event) -> Any:
    with _hooks.observe_handler(event, registration.name):
        start = clock() if _timing and registration.latency.due() else 0
        try:
            return await registration.plan.run(event)
        finally:
            if start:
                registration.latency.add(clock() - start)


async def _run_one(registration: Registration, events: Sequence[Event]) -> None:
    plan = registration.plan
    # Sampled per batch, not per run: the runs of an untimed batch pay for nothing but this flag. While a page
    # watches, _observed times (and samples) each run itself: asking here too would skip a batch's turn.
    timed = not _on_handle and bool(_timing) and registration.latency.due()
    for event in events:
        try:
            if _on_handle:
                await _observed(registration, event)
            elif timed:
                start = clock()
                try:
                    await plan.run(event)
                finally:
                    registration.latency.add(clock() - start)
            else:
                await plan.run(event)
        except Exception as exc:
            report_failure(event, registration.func, exc)


def _run_sync_group(
    work: Sequence[tuple[Registration, Sequence[Event]]],
) -> list[tuple[Event, Any, Exception]]:
    # Runs in one worker thread: one hop for all sync functions of a batch instead of one per call.
    failures: list[tuple[Event, Any, Exception]] = []
    for registration, events in work:
        timed = bool(_timing) and registration.latency.due()  # per batch, as in _run_one
        for event in events:
            start = clock() if timed else 0
            try:
                if _on_handle:
                    with _hooks.observe_handler(event, registration.name):
                        registration.plan.run_sync(event)
                else:
                    registration.plan.run_sync(event)
            except Exception as exc:
                failures.append((event, registration.func, exc))
            if start:
                registration.latency.add(clock() - start)
    return failures


async def _run_sync_work(work: Sequence[tuple[Registration, Sequence[Event]]]) -> None:
    for event, func, exc in await submit(_run_sync_group, work):
        report_failure(event, func, exc)


async def _run_all(work: Sequence[tuple[Registration, Sequence[Event]]]) -> None:
    sync_work = [item for item in work if item[0].plan.all_sync]
    jobs = [_run_one(registration, events) for registration, events in work if not registration.plan.all_sync]
    if sync_work:
        jobs.append(_run_sync_work(sync_work))
    if len(jobs) == 1:
        await jobs[0]
    elif jobs:
        await asyncio.gather(*jobs)


local_handler = LocalHandler()

__all__ = ["Depends", "LocalHandler", "local_handler"]
