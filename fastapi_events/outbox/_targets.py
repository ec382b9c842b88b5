"""Handing outbox events to the middleware's handlers, one *target* per handler, with a verdict per handler.

The outbox tracks progress per handler, so each target asks its handler for answers (the handler protocol's
``deliver(events, answers)``) and merges them into verdicts per row: a forwarder answers once the broker
acknowledged an event (the outbox row is the durable copy, so it sends directly instead of queueing), a
:class:`~fastapi_events.handlers.local.LocalHandler` per registered function (so a function that succeeded is not
run again because another one failed), any other handler as a whole (an event failed when it reported a failure).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from .._event_meta import IdentifiedEvent
from .._report import qualified_name
from ..handlers.base import WHOLE, Answer, Answers, Handler, Verdict, as_handler, describe
from ..handlers.local import LocalHandler
from ._store import Record

logger = logging.getLogger("fastapi_events.outbox")


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str
    permanent: bool = False  # dead-letter at once (the broker refused it, it cannot be encoded)
    outage: bool = False  # the broker was unreachable: retry without using up the retry budget


Item = tuple[Record, IdentifiedEvent]
#: ``{seq: {handler name: None (it has the event) or Failure}}``; handlers skipped for a row are absent.
Verdicts = dict[int, dict[str, Failure | None]]


def _failure(answer: Answer) -> Failure | None:
    if answer.verdict is Verdict.DELIVERED:
        return None
    return Failure(answer.reason, permanent=answer.verdict is Verdict.DEAD, outage=answer.outage)


class Target:
    """One handler of the outbox; ``name`` is its progress name, ``prefix`` goes before its units' names."""

    def __init__(self, name: str, handler: Handler, prefix: str) -> None:
        self.name = name
        self.handler = handler
        self.prefix = prefix

    def _unit_name(self, unit: str) -> str:
        return self.name if unit == WHOLE else self.prefix + unit

    def _done(self, record: Record) -> Collection[str]:
        """The units of this handler that already have the row's event (named as the handler names them)."""
        prefix = self.prefix
        done = {n[len(prefix) :] for n in record.skip if n.startswith(prefix)}
        if self.name in record.skip:
            done.add(WHOLE)
        return done

    async def deliver(self, items: Sequence[Item]) -> Verdicts:
        answers = Answers(len(items), [self._done(record) for record, _ in items])
        await self.handler.deliver([event for _, event in items], answers)
        verdicts: Verdicts = {}
        for (record, _), units in zip(items, answers.by_event, strict=True):
            if units:
                verdicts[record.seq] = {self._unit_name(unit): _failure(answer) for unit, answer in units.items()}
        return verdicts


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
        # The first LocalHandler's functions go by their own names, which is what operators look for.
        prefix = "" if name == base and isinstance(handler, LocalHandler) else f"{name}:"
        targets.append(Target(name, as_handler(handler), prefix))
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
            verdicts = {record.seq: {target.name: Failure(describe(verdicts))} for record, _ in items}
        for seq, by_handler in verdicts.items():
            merged[seq].update(by_handler)
    return merged


__all__ = ["Failure", "Target", "Verdicts", "build_targets", "deliver", "handler_name"]
