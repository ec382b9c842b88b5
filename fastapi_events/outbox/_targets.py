"""Handing outbox events to the middleware's handlers, one *target* per handler, with a verdict per handler.

The outbox tracks progress per handler, so each target reports, for every event it was given, whether its
handler has it. A forwarder "has" an event once the broker acknowledged it: the outbox row is the durable copy,
so forwarders send directly through their transport instead of queueing in memory or in a spool. A
:class:`~fastapi_events.handlers.local.LocalHandler` is tracked per registered function, so a function that
succeeded is not run again because another one failed. Any other handler has an event unless it reported a
failure for it (the ``on_error`` path every handler uses).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._event_meta import IdentifiedEvent
from .._report import current_error_hook, qualified_name, report_failure
from .._runtime import _run_handler
from ..codec import encode_event
from ..delivery import Entry, ForwardHandler, Outcome, encode_events, send_batches, split_for
from ..handlers.local import LocalHandler, _observed
from ..typing import Event
from ._store import Record

logger = logging.getLogger("fastapi_events.outbox")

# How long a forwarder's transport may take to open before the round counts as a broker outage.
_OPEN_WAIT = 2.0


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str
    permanent: bool = False  # dead-letter at once (the broker refused it, it cannot be encoded)
    outage: bool = False  # the broker was unreachable: retry without using up the retry budget


Item = tuple[Record, IdentifiedEvent]
#: ``{seq: {handler name: None (it has the event) or Failure}}``; handlers skipped for a row are absent.
Verdicts = dict[int, dict[str, Failure | None]]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Target:
    def __init__(self, name: str, handler: Any) -> None:
        self.name = name
        self.handler = handler

    async def deliver(self, items: Sequence[Item]) -> Verdicts:
        raise NotImplementedError


class GenericTarget(Target):
    async def deliver(self, items: Sequence[Item]) -> Verdicts:
        todo = [(record, event) for record, event in items if self.name not in record.skip]
        if not todo:
            return {}
        by_event = {id(event): record.seq for record, event in todo}
        failures: dict[int, Failure] = {}
        outer = current_error_hook.get()

        def collect(event: Event, handler_name: str, exc: BaseException) -> Any:
            seq = by_event.get(id(event))
            hit = [seq] if seq is not None else list(by_event.values())  # not ours: count it against all
            for s in hit:
                failures[s] = Failure(_describe(exc))
            return outer(event, handler_name, exc) if outer is not None else None

        token = current_error_hook.set(collect)
        try:
            await _run_handler(self.handler, [event for _, event in todo])
        finally:
            current_error_hook.reset(token)
        return {record.seq: {self.name: failures.get(record.seq)} for record, _ in todo}


class LocalTarget(Target):
    def __init__(self, name: str, handler: LocalHandler, prefix: str) -> None:
        super().__init__(name, handler)
        self.local: LocalHandler = handler
        self.prefix = prefix

    async def deliver(self, items: Sequence[Item]) -> Verdicts:
        jobs = []
        for record, event in items:
            for registration in self.local._get_handlers_for_event(event[0]):
                unit = self.prefix + registration.name
                if unit not in record.skip:
                    jobs.append((record.seq, unit, registration, event))
        if not jobs:
            return {}
        results = await asyncio.gather(*(_observed(reg, event) for _, _, reg, event in jobs), return_exceptions=True)
        verdicts: Verdicts = {}
        for (seq, unit, registration, event), result in zip(jobs, results, strict=True):
            verdict: Failure | None = None
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                report_failure(event, registration.func, result)
                verdict = Failure(_describe(result))
            verdicts.setdefault(seq, {})[unit] = verdict
        return verdicts


class ForwarderTarget(Target):
    def __init__(self, name: str, handler: ForwardHandler) -> None:
        super().__init__(name, handler)
        self.forwarder: ForwardHandler = handler
        self._waited = False

    async def _open(self) -> None:
        forwarder = self.forwarder
        if forwarder._transport_open:
            return
        if self._waited:
            # The broker was unreachable before: the forwarder keeps trying to open in the background; meanwhile
            # this round is an outage at once rather than holding up a request's ASGI call.
            raise ConnectionError(f"{forwarder!r}: transport not open (broker unreachable)")
        self._waited = True
        # The forwarder's own sender task opens (and re-opens) the transport; wait for it a little, once.
        await forwarder.startup()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _OPEN_WAIT
        while not forwarder._transport_open:
            if loop.time() >= deadline:
                raise ConnectionError(f"{forwarder!r}: transport not open (broker unreachable?)")
            await asyncio.sleep(0.02)

    async def deliver(self, items: Sequence[Item]) -> Verdicts:
        todo = [(record, event) for record, event in items if self.name not in record.skip]
        if not todo:
            return {}
        name, forwarder = self.name, self.forwarder
        try:
            await self._open()
        except Exception as exc:
            outage = Failure(_describe(exc), outage=True)
            return {record.seq: {name: outage} for record, _ in todo}
        transport = forwarder.transport
        seq_of = {record.event_id: record.seq for record, _ in todo}
        encoded = encode_events(
            [event for _, event in todo],
            transport,
            serializer=forwarder.serializer or _committed_body,
            id_generator=forwarder.id_generator,
            key=forwarder.key,
        )
        verdicts: Verdicts = {}
        for dead in encoded.dead:
            verdicts[seq_of[dead.message.id]] = {name: Failure(dead.reason, permanent=True)}
        entries = [Entry(seq_of[m.id], m) for m in encoded.messages]
        split = split_for(transport, entries)
        for entry, size in split.oversize:
            verdicts[entry.seq] = {name: Failure(f"message is {size} bytes, over the limit", permanent=True)}
        sent, deferred = await send_batches(transport, split.batches)
        for batch, results, error in sent:
            if results is None:
                for entry in batch:
                    verdicts[entry.seq] = {name: Failure(error, outage=True)}
                continue
            for entry, result in zip(batch, results, strict=True):
                if result.outcome is Outcome.DELIVERED:
                    verdicts[entry.seq] = {name: None}
                else:
                    permanent = result.outcome is Outcome.PERMANENT
                    verdicts[entry.seq] = {name: Failure(result.reason, permanent=permanent)}
        for entry in deferred:
            verdicts[entry.seq] = {name: Failure("held back behind an earlier failure", outage=True)}
        return verdicts


def _committed_body(event: Event) -> str | bytes:
    # The row holds the wire body already (JSON ["name", payload], as committed): send it as it is.
    body = getattr(event, "body", None)
    return body if isinstance(body, str) else encode_event(event)


def handler_name(handler: Any) -> str:
    """A name that stays the same across restarts: a custom ``repr`` (forwarders show their destination), or
    the qualified name of the handler's function or class."""
    if type(handler).__repr__ is not object.__repr__:  # type: ignore[comparison-overlap]
        return repr(handler)
    return qualified_name(handler)


def build_targets(handlers: Sequence[Any]) -> list[Target]:
    targets: list[Target] = []
    seen: dict[str, int] = {}
    for handler in handlers:
        base = handler_name(handler)
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}#{seen[base]}"
        if isinstance(handler, ForwardHandler):
            targets.append(ForwarderTarget(name, handler))
        elif isinstance(handler, LocalHandler):
            # The first LocalHandler's functions go by their own names, which is what operators look for.
            targets.append(LocalTarget(name, handler, "" if name == base else f"{name}:"))
        else:
            targets.append(GenericTarget(name, handler))
    return targets


async def deliver(targets: Sequence[Target], items: Sequence[Item]) -> Verdicts:
    """Every target gets the items concurrently; their verdicts merged per row."""
    merged: Verdicts = {record.seq: {} for record, _ in items}
    results = await asyncio.gather(*(target.deliver(items) for target in targets), return_exceptions=True)
    for target, verdicts in zip(targets, results, strict=True):
        if isinstance(verdicts, BaseException):
            if not isinstance(verdicts, Exception):
                raise verdicts
            logger.error("outbox: delivering to %s failed", target.name, exc_info=verdicts)
            verdicts = {record.seq: {target.name: Failure(_describe(verdicts))} for record, _ in items}
        for seq, by_handler in verdicts.items():
            merged[seq].update(by_handler)
    return merged


__all__ = ["Failure", "Target", "Verdicts", "build_targets", "deliver", "handler_name"]
