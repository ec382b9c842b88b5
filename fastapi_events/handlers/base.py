"""The handler protocol every built-in and custom handler follows, and its base class.

:class:`Handler` is declared once and used by everything that runs handlers: the middleware's runtime, the
consumer, the outbox and the inspector. ``deliver(events)`` hands a batch over and reports failures (the
``fastapi_events`` logger and the middleware's ``on_error``); ``deliver(events, answers)`` also answers, per event,
whether it was delivered, is to be retried or is dead - per *unit*: a :class:`~fastapi_events.LocalHandler`
answers per registered function, any other handler as a whole (unit ``""``).
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .._names import event_name_str
from .._report import current_error_hook, report_batch_failure, report_failure
from ..errors import HandlerFailedError
from ..typing import Event

#: The unit of a handler that answers as a whole.
WHOLE = ""


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Answer:
    """What one unit of a handler says about one event."""

    verdict: Verdict
    reason: str = ""
    #: Retry without using up the retry budget: the broker was unreachable, the event is not at fault.
    outage: bool = False
    error: BaseException | None = None


_DELIVERED = Answer(Verdict.DELIVERED)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Answers:
    """The answers of one handler for one batch: ``by_event[i][unit]``, for the units that took part.

    ``done[i]`` names the units that already have event ``i`` (an earlier attempt delivered it to them): they
    are not run again. ``report=False``: the caller reports failures its own way (a consumer retries and
    dead-letters); a handler that can only say "failed" by reporting (a 0.x handler) reports anyway.
    """

    __slots__ = ("_done", "by_event", "report")

    def __init__(self, count: int, done: Sequence[Collection[str]] | None = None, *, report: bool = True) -> None:
        self.by_event: list[dict[str, Answer]] = [{} for _ in range(count)]
        self._done = done
        self.report = report

    def wants(self, index: int, unit: str = WHOLE) -> bool:
        return self._done is None or unit not in self._done[index]

    def delivered(self, index: int, unit: str = WHOLE) -> None:
        self.by_event[index][unit] = _DELIVERED

    def retry(self, index: int, reason: str, unit: str = WHOLE, *, outage: bool = False) -> None:
        self.by_event[index][unit] = Answer(Verdict.RETRY, reason, outage)

    def dead(self, index: int, reason: str, unit: str = WHOLE) -> None:
        self.by_event[index][unit] = Answer(Verdict.DEAD, reason)

    def failed(self, index: int, exc: BaseException, unit: str = WHOLE) -> None:
        """The unit raised ``exc`` for the event: to be retried."""
        self.by_event[index][unit] = Answer(Verdict.RETRY, describe(exc), error=exc)

    def failures(self) -> list[tuple[int, str, Answer]]:
        return [
            (index, unit, answer)
            for index, units in enumerate(self.by_event)
            for unit, answer in units.items()
            if answer.verdict is not Verdict.DELIVERED
        ]


@runtime_checkable
class Handler(Protocol):
    """What the runtime, the consumer, the outbox and the inspector call on a handler."""

    async def startup(self) -> None:
        """Once, when the app (or relay) starts."""

    async def flush(self, timeout: float | None = None) -> None:
        """Return once every event accepted so far is delivered (or durably stored / dead-lettered)."""

    async def shutdown(self, timeout: float | None = None) -> None:
        """After the last events were handed over: flush and release resources."""

    async def deliver(self, events: Sequence[Event], answers: Answers | None = None) -> None:
        """Hand ``events`` (in dispatch order) over; with ``answers``, answer for each event per unit."""


class BaseEventHandler:
    """Base class for event handlers; implements :class:`Handler`.

    The middleware hands it one request's events, in dispatch order. A subclass overrides either
    :meth:`handle_many` (batch-aware, preferred when defined) or :meth:`handle` (one event at a time), as in 0.x;
    it says an event failed by raising from :meth:`handle` or by calling :func:`report_failure`. Handlers that
    know more (the built-in ones) override :meth:`deliver`.

    Optional lifecycle hooks, all no-ops by default, are driven by the middleware:

    * :meth:`startup` once at ASGI lifespan startup;
    * :meth:`flush` by :func:`fastapi_events.drain` - return once every event accepted so far is delivered
      (or durably stored / dead-lettered);
    * :meth:`shutdown` at lifespan shutdown, after the last events were handed over - flush and release resources.
    """

    async def handle(self, event: Event) -> None:
        raise NotImplementedError(f"{type(self).__qualname__} must implement handle() or handle_many()")

    async def handle_many(self, events: Iterable[Event]) -> None:
        # One failing event must not stop the rest of the batch.
        for event in events:
            try:
                await self.handle(event)
            except Exception as exc:
                report_failure(event, self, exc)

    async def deliver(self, events: Sequence[Event], answers: Answers | None = None) -> None:
        if answers is None:
            await self.handle_many(events)
            return
        await _answer_by_reports(self, self.handle_many, events, answers)

    async def startup(self) -> None:
        return None

    async def flush(self, timeout: float | None = None) -> None:
        return None

    async def shutdown(self, timeout: float | None = None) -> None:
        await self.flush(timeout)


async def _answer_by_reports(handler: Any, handle_many: Any, events: Sequence[Event], answers: Answers) -> None:
    """Run a handler that says nothing per event: an event failed when a failure was reported for it."""
    todo = [index for index in range(len(events)) if answers.wants(index)]
    if not todo:
        return
    batch = [events[index] for index in todo]
    position = {id(events[index]): index for index in todo}
    failed: dict[int, str] = {}
    outer = current_error_hook.get()

    def collect(event: Event, handler_name: str, exc: BaseException) -> Any:
        index = position.get(id(event))
        for hit in [index] if index is not None else todo:  # not one of ours: it counts against all
            failed[hit] = describe(exc)
        return outer(event, handler_name, exc) if outer is not None else None

    token = current_error_hook.set(collect)
    try:
        result = handle_many(batch)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        report_batch_failure(batch, handler, exc)
    finally:
        current_error_hook.reset(token)
    for index in todo:
        reason = failed.get(index)
        if reason is None:
            answers.delivered(index)
        else:
            answers.retry(index, reason)


class _Adapted(BaseEventHandler):
    """A handler object that is no :class:`BaseEventHandler` (``handle`` / ``handle_many``, sync or async, and
    whichever lifecycle hooks it has), seen through :class:`Handler`. Failures are reported under its own name."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        # The user's object: which of these it has is known only by looking, once, here.
        self._handle_many = getattr(handler, "handle_many", None)
        self._handle = getattr(handler, "handle", None)
        self._startup = getattr(handler, "startup", None)
        self._flush = getattr(handler, "flush", None)
        self._shutdown = getattr(handler, "shutdown", None)

    async def handle_many(self, events: Iterable[Event]) -> None:
        if self._handle_many is not None:
            result = self._handle_many(events)
            if inspect.isawaitable(result):
                await result
            return
        for event in events:
            try:
                result = self._handle(event)  # type: ignore[misc]
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                report_failure(event, self.handler, exc)

    async def deliver(self, events: Sequence[Event], answers: Answers | None = None) -> None:
        if answers is None:
            await self.handle_many(events)
            return
        await _answer_by_reports(self.handler, self.handle_many, events, answers)

    async def startup(self) -> None:
        if self._startup is not None:
            await self._startup()

    async def flush(self, timeout: float | None = None) -> None:
        if self._flush is not None:
            await self._flush(timeout)

    async def shutdown(self, timeout: float | None = None) -> None:
        if self._shutdown is not None:
            await self._shutdown(timeout)


async def deliver_strict(handler: Handler, event: Event) -> int:
    """Deliver one event and return how many units took part; raise :class:`HandlerFailedError` if any failed.

    Consumers use this to acknowledge a message only after all its handlers succeeded (and report failures their
    own way: retry, then dead-letter).
    """
    answers = Answers(1, report=False)
    await handler.deliver((event,), answers)
    failures = [
        (unit, answer.error if answer.error is not None else RuntimeError(answer.reason))
        for _, unit, answer in answers.failures()
    ]
    if failures:
        raise HandlerFailedError(event_name_str(event[0]), failures)
    return len(answers.by_event[0])


def as_handler(handler: Any) -> Handler:
    """``handler`` seen through :class:`Handler` (itself when it implements it), for whatever runs handlers."""
    if isinstance(handler, BaseEventHandler):
        return handler
    if isinstance(handler, Handler):
        return handler
    return _Adapted(handler)


__all__ = [
    "WHOLE",
    "Answer",
    "Answers",
    "BaseEventHandler",
    "Handler",
    "Verdict",
    "as_handler",
    "deliver_strict",
    "describe",
    "report_failure",
]
