"""FastAPI-style dependency injection for local handlers.

The graph is built once, when a handler is registered, into a flat :class:`Plan` (dependencies first, handler last,
shared dependencies resolved once per call as FastAPI's ``use_cache`` does); every event then only *runs* the plan.
Sync callables run in a worker thread with the context copied; ``yield`` dependencies are torn down after the
handler, also when it raised (the exception is thrown into them, as FastAPI does).
"""

from __future__ import annotations

import enum
import inspect
import typing
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from .._threads import run_sync, submit
from ..errors import ConfigurationError
from ..typing import Event


@dataclass(frozen=True)
class EventsDepends:
    """``Depends`` for apps without FastAPI; with FastAPI installed ``fastapi.Depends`` is used instead."""

    dependency: Callable[..., Any] | None = None
    use_cache: bool = True


try:
    from fastapi.params import Depends as _FastAPIDepends

    DEPENDS_TYPES: tuple[type, ...] = (_FastAPIDepends, EventsDepends)
except ImportError:  # pragma: no cover - Starlette-only installs
    DEPENDS_TYPES = (EventsDepends,)

EVENT = -1  # a step argument taking the event itself, instead of another step's value


class Kind(enum.Enum):
    ASYNC = "async"
    SYNC = "sync"
    ASYNC_GEN = "async generator"
    SYNC_GEN = "generator"


@dataclass(frozen=True)
class Step:
    call: Callable[..., Any]
    kind: Kind
    positional: tuple[int, ...]
    keywords: tuple[tuple[str, int], ...]

    def arguments(self, event: Event, values: list[Any]) -> tuple[list[Any], dict[str, Any]]:
        # Plain loops: on Python < 3.12 every comprehension is a function call of its own.
        args = []
        for ref in self.positional:
            args.append(event if ref == EVENT else values[ref])
        kwargs = {}
        for name, ref in self.keywords:
            kwargs[name] = event if ref == EVENT else values[ref]
        return args, kwargs


def _kind(call: Callable[..., Any]) -> Kind:
    if inspect.isclass(call):
        return Kind.SYNC
    for target in (call, getattr(call, "__call__", None)):  # noqa: B004 - callable objects define __call__
        if target is None:
            continue
        if inspect.isasyncgenfunction(target):
            return Kind.ASYNC_GEN
        if inspect.iscoroutinefunction(target):
            return Kind.ASYNC
        if inspect.isgeneratorfunction(target):
            return Kind.SYNC_GEN
    return Kind.SYNC


def _type_hints(call: Callable[..., Any]) -> dict[str, Any]:
    if inspect.isclass(call):
        target: Any = call.__init__
    elif inspect.isfunction(call) or inspect.ismethod(call):
        target = call
    else:
        target = getattr(type(call), "__call__", call)  # noqa: B004
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:
        pass
    # Some annotation cannot be resolved (often a name local to a function under
    # ``from __future__ import annotations``): resolve the others one by one, and refuse to silently drop a
    # ``Depends`` hidden in a string we cannot evaluate.
    hints: dict[str, Any] = {}
    namespace = getattr(target, "__globals__", {})
    for name, annotation in getattr(target, "__annotations__", {}).items():
        if not isinstance(annotation, str):
            hints[name] = annotation
            continue
        try:
            hints[name] = eval(annotation, namespace)
        except Exception as exc:
            if "Depends" in annotation:
                raise ConfigurationError(
                    f"{_qualname(call)}: cannot evaluate the annotation of {name!r} ({annotation!r}): {exc}; "
                    "define the dependency at module level"
                ) from exc
    return hints


def _annotated_in_implicit_optional(annotation: Any) -> Any:
    """Python 3.10's ``get_type_hints`` wraps the hint of a parameter defaulting to ``None`` in ``Optional[...]``,
    which hides an ``Annotated[..., Depends(...)]`` inside a ``Union``: return that ``Annotated`` hint."""
    if typing.get_origin(annotation) is typing.Union:
        members = typing.get_args(annotation)
        if len(members) == 2 and type(None) in members:
            inner = members[0] if members[1] is type(None) else members[1]
            if typing.get_origin(inner) is Annotated:
                return inner
    return annotation


def _is_event_annotation(annotation: Any) -> bool:
    return annotation is not inspect.Parameter.empty and annotation == Event


def _positional_ok(call: Callable[..., Any]) -> bool:
    """Whether the first parameter of ``call`` accepts a positional argument."""
    try:
        first = next(iter(inspect.signature(call).parameters.values()))
    except (StopIteration, TypeError, ValueError):
        return False
    return first.kind in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD)


def _qualname(call: Callable[..., Any]) -> str:
    return getattr(call, "__qualname__", None) or type(call).__qualname__


class Plan:
    """A handler and its dependencies, flattened in resolution order."""

    def __init__(self, handler: Callable[..., Any]) -> None:
        self._steps: list[Step] = []
        self._cache: dict[Callable[..., Any], int] = {}
        self._visiting: set[int] = set()
        self._add(handler, is_handler=True, use_cache=False)
        self.steps: tuple[Step, ...] = tuple(self._steps)
        del self._steps, self._cache, self._visiting
        kinds = {step.kind for step in self.steps}
        self.has_teardown = bool(kinds & {Kind.ASYNC_GEN, Kind.SYNC_GEN})
        #: Everything is sync: the whole plan runs in one worker-thread hop.
        self.all_sync = kinds <= {Kind.SYNC, Kind.SYNC_GEN}
        self.handler_step = self.steps[-1]
        # The common cases skip argument building: a handler without dependencies is called as f(event) or f().
        self._direct: Callable[..., Any] | None = None
        self._direct_takes_event = False
        step = self.handler_step
        if len(self.steps) == 1 and step.kind in (Kind.ASYNC, Kind.SYNC):
            refs = [*step.positional, *(ref for _, ref in step.keywords)]
            if not refs or (refs == [EVENT] and (step.positional or _positional_ok(step.call))):
                self._direct = step.call
                self._direct_takes_event = bool(refs)
        #: ``run(event)``: the awaitable running the plan, chosen once: an all-sync plan hands the worker's future
        #: itself (no coroutine frame around the thread hop), an async handler taking only the event its own
        #: coroutine.
        self.run: Callable[[Event], Awaitable[Any]] = self._run
        if self.all_sync:
            self.run = self._run_in_thread
        elif self._direct is not None and self._direct_takes_event:
            self.run = self._direct

    def _add(self, call: Callable[..., Any], *, is_handler: bool, use_cache: bool) -> int:
        if use_cache and call in self._cache:
            return self._cache[call]
        if id(call) in self._visiting:
            raise ConfigurationError(f"dependency cycle through {_qualname(call)}")
        self._visiting.add(id(call))
        try:
            signature = inspect.signature(call)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"cannot inspect the signature of {call!r}: {exc}") from exc
        hints = _type_hints(call)
        positional: list[int] = []
        keywords: list[tuple[str, int]] = []
        event_taken = False
        for param in signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            annotation = _annotated_in_implicit_optional(hints.get(param.name, param.annotation))
            depends = param.default if isinstance(param.default, DEPENDS_TYPES) else None
            if typing.get_origin(annotation) is Annotated:
                inner, *metadata = typing.get_args(annotation)
                for item in metadata:
                    if isinstance(item, DEPENDS_TYPES):
                        depends = item
                annotation = inner
            if depends is not None:
                dependency = getattr(depends, "dependency", None) or annotation
                if not callable(dependency):
                    raise ConfigurationError(
                        f"{_qualname(call)}: Depends() on parameter {param.name!r} has nothing to call"
                    )
                ref = self._add(dependency, is_handler=False, use_cache=getattr(depends, "use_cache", True))
            elif _is_event_annotation(annotation) or (param.name == "event" and param.default is param.empty):
                ref, event_taken = EVENT, True
            elif param.default is not param.empty:
                continue
            elif is_handler and not event_taken:
                ref, event_taken = EVENT, True
            else:
                raise ConfigurationError(
                    f"{_qualname(call)}: parameter {param.name!r} is neither the event nor a Depends() dependency"
                )
            if param.kind is param.POSITIONAL_ONLY:
                positional.append(ref)
            else:
                keywords.append((param.name, ref))
        self._visiting.discard(id(call))
        self._steps.append(Step(call, _kind(call), tuple(positional), tuple(keywords)))
        index = len(self._steps) - 1
        if use_cache:
            self._cache[call] = index
        return index

    # -- running ------------------------------------------------------------------------------------------------

    def _run_in_thread(self, event: Event) -> Awaitable[Any]:
        return submit(self.run_sync, event)

    async def _run(self, event: Event) -> Any:
        """Resolve the dependencies for ``event`` and call the handler, on the event loop (sync parts in threads)."""
        direct = self._direct
        if direct is not None:
            return await (direct(event) if self._direct_takes_event else direct())
        if not self.has_teardown:
            # Steps inline, without a coroutine per step: the usual plans (plain async, sync dependencies).
            values: list[Any] = []
            for step in self.steps:
                args, kwargs = step.arguments(event, values)
                if step.kind is Kind.ASYNC:
                    values.append(await step.call(*args, **kwargs))
                else:
                    value = await _in_thread(step, args, kwargs)
                    if inspect.isawaitable(value):  # a sync wrapper around a coroutine function
                        value = await value
                    values.append(value)
            return values[-1]
        async with AsyncExitStack() as stack:
            values = []
            for step in self.steps:
                values.append(await _run_step(step, event, values, stack))
            return values[-1]

    def run_sync(self, event: Event) -> Any:
        """The whole plan in the calling (worker) thread; only valid when :attr:`all_sync`."""
        direct = self._direct
        if direct is not None:
            return direct(event) if self._direct_takes_event else direct()
        with ExitStack() as stack:
            values: list[Any] = []
            for step in self.steps:
                args, kwargs = step.arguments(event, values)
                if step.kind is Kind.SYNC_GEN:
                    values.append(stack.enter_context(contextmanager(step.call)(*args, **kwargs)))
                else:
                    values.append(step.call(*args, **kwargs))
            return values[-1]


def _in_thread(step: Step, args: list[Any], kwargs: dict[str, Any]) -> Awaitable[Any]:
    return submit(step.call, *args) if not kwargs else submit(lambda: step.call(*args, **kwargs))


async def _run_step(step: Step, event: Event, values: list[Any], stack: AsyncExitStack | None) -> Any:
    args, kwargs = step.arguments(event, values)
    kind = step.kind
    if kind is Kind.ASYNC:
        return await step.call(*args, **kwargs)
    if kind is Kind.SYNC:
        result = await _in_thread(step, args, kwargs)
        if inspect.isawaitable(result):  # a sync wrapper around a coroutine function
            result = await result
        return result
    assert stack is not None
    if kind is Kind.ASYNC_GEN:
        return await stack.enter_async_context(asynccontextmanager(step.call)(*args, **kwargs))
    manager = contextmanager(step.call)(*args, **kwargs)
    value = await run_sync(manager.__enter__)

    async def exit_in_thread(*exc_info: Any) -> bool | None:
        return await run_sync(manager.__exit__, *exc_info)

    stack.push_async_exit(exit_in_thread)
    return value
