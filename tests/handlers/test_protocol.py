"""The handler protocol: every kind of handler answers per event (and per unit) through ``deliver``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from fastapi_events.brokers.memory import InMemoryBroker
from fastapi_events.errors import HandlerFailedError
from fastapi_events.handlers.base import (
    WHOLE,
    Answers,
    BaseEventHandler,
    Handler,
    Verdict,
    as_handler,
    deliver_strict,
)
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.typing import Event

pytestmark = pytest.mark.anyio


def verdicts(answers: Answers) -> list[dict[str, Verdict]]:
    return [{unit: answer.verdict for unit, answer in units.items()} for units in answers.by_event]


class OldStyle(BaseEventHandler):
    """A 0.x handler: one event at a time, raising for the events it cannot handle."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def handle(self, event: Event) -> None:
        if event[0] == "bad":
            raise ValueError("cannot handle bad")
        self.seen.append(str(event[0]))


async def test_a_0x_subclass_answers_by_what_it_raised_or_reported() -> None:
    handler = OldStyle()
    answers = Answers(3)
    await handler.deliver([("a", 1), ("bad", 2), ("c", 3)], answers)
    assert handler.seen == ["a", "c"]
    assert verdicts(answers) == [{WHOLE: Verdict.DELIVERED}, {WHOLE: Verdict.RETRY}, {WHOLE: Verdict.DELIVERED}]
    assert "cannot handle bad" in answers.by_event[1][WHOLE].reason


async def test_a_0x_subclass_with_handle_many_still_gets_the_whole_batch() -> None:
    batches: list[list[str]] = []

    class Batching(BaseEventHandler):
        async def handle_many(self, events: Iterable[Event]) -> None:
            batches.append([str(event[0]) for event in events])

    await Batching().deliver([("a", None), ("b", None)])
    assert batches == [["a", "b"]]


async def test_a_plain_object_is_adapted_once_and_keeps_its_own_name_in_reports(caplog: Any) -> None:
    class Plain:
        def __init__(self) -> None:
            self.started = False

        def handle(self, event: Event) -> None:  # sync, as 0.x allowed
            if event[1] is None:
                raise RuntimeError("no payload")

        async def startup(self) -> None:
            self.started = True

    plain = Plain()
    handler = as_handler(plain)
    assert isinstance(handler, Handler)
    await handler.startup()
    assert plain.started
    answers = Answers(2)
    await handler.deliver([("x", 1), ("y", None)], answers)
    assert verdicts(answers) == [{WHOLE: Verdict.DELIVERED}, {WHOLE: Verdict.RETRY}]
    assert any("Plain" in record.getMessage() for record in caplog.records)


async def test_a_handler_implementing_the_protocol_is_used_as_it_is() -> None:
    local = LocalHandler()
    assert as_handler(local) is local


async def test_local_handler_answers_per_function_and_skips_the_ones_done() -> None:
    handler = LocalHandler()
    calls: list[str] = []

    @handler.register(event_name="order.*")
    async def bill(event: Event) -> None:
        calls.append("bill")

    @handler.register(event_name="order.*")
    def ship(event: Event) -> None:
        calls.append("ship")
        raise OSError("carrier down")

    answers = Answers(2, [set(), {bill.__module__ + "." + bill.__qualname__}])
    await handler.deliver([("order.paid", {}), ("order.paid", {})], answers)
    bill_unit = f"{bill.__module__}.{bill.__qualname__}"
    ship_unit = f"{ship.__module__}.{ship.__qualname__}"
    assert verdicts(answers) == [
        {bill_unit: Verdict.DELIVERED, ship_unit: Verdict.RETRY},
        {ship_unit: Verdict.RETRY},  # bill already had the second event: not run again
    ]
    assert sorted(calls) == ["bill", "ship", "ship"]
    assert isinstance(answers.by_event[0][ship_unit].error, OSError)


async def test_deliver_strict_counts_units_and_raises_naming_the_failed_ones() -> None:
    handler = LocalHandler()

    @handler.register(event_name="a*")
    async def one(event: Event) -> None:
        if event[0] == "ab":
            raise ValueError("no ab")

    assert await deliver_strict(handler, ("a", None)) == 1
    assert await deliver_strict(handler, ("zzz", None)) == 0
    with pytest.raises(HandlerFailedError, match="no ab") as raised:
        await deliver_strict(handler, ("ab", None))
    assert [name for name, _ in raised.value.failures] == [f"{one.__module__}.{one.__qualname__}"]


async def test_forward_handler_answers_through_one_send_round_of_its_transport() -> None:
    broker = InMemoryBroker()
    forwarder = broker.forwarder("orders")
    broker.fail_next("orders", permanent=True)
    answers = Answers(3)
    try:
        await forwarder.deliver([("refused", 1), ("ok", 2), ("unencodable", object())], answers)
    finally:
        await forwarder.shutdown(5)
    assert verdicts(answers) == [{WHOLE: Verdict.DEAD}, {WHOLE: Verdict.DELIVERED}, {WHOLE: Verdict.DEAD}]
    # Sent directly: the delivered event is on the topic, nothing waits in the forwarder's queue.
    assert broker.messages("orders") == [("ok", 2)]
    assert forwarder.stats.queued == 0


async def test_forward_handler_answers_outage_while_the_broker_is_unreachable() -> None:
    broker = InMemoryBroker()
    forwarder = broker.forwarder("orders", reconnect_max_delay=0.05)
    answers = Answers(1)
    try:
        with broker.unreachable("orders"):
            await forwarder.deliver([("ok", 1)], answers)
    finally:
        await forwarder.shutdown(5)
    answer = answers.by_event[0][WHOLE]
    assert answer.verdict is Verdict.RETRY
    assert answer.outage
    assert broker.messages("orders") == []
