"""librdkafka's delivery reports, as the delivery layer reads them: each report's entry result, and one submitted
batch's reports, settled on the event loop that submitted it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError

from ...delivery import DELIVERED, EntryResult, Outcome

# Errors about the message or our rights: resending the same bytes can never succeed.
_PERMANENT = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError._INVALID_ARG,
    }
)
# Nothing reached the cluster, or the topic cannot be used (missing, not allowed): an outage, which must not use
# up the events' retry budget - the topic may be (re)created, the ACL fixed, a minute later.
FATAL = -100_000  # not a librdkafka code: "the producer died", which is no fault of the message either
UNREACHABLE = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._PURGE_QUEUE,
        KafkaError._PURGE_INFLIGHT,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        FATAL,
    }
)
TOPIC_MISSING = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC})

# The entry's result and the librdkafka error code behind it (None: delivered or refused before sending).
Report = tuple[EntryResult, "int | None"]
OK: Report = (DELIVERED, None)


def classify(error: KafkaError) -> EntryResult:
    reason = f"{error.name()}: {error.str()}"
    if error.code() in _PERMANENT:
        return EntryResult(Outcome.PERMANENT, reason)
    return EntryResult(Outcome.RETRY, reason)


def failed(reason: str) -> Report:
    """The report of an entry whose producer died under it."""
    return (EntryResult(Outcome.RETRY, reason), FATAL)


class Reports:
    """The delivery reports of one submitted batch. ``future`` gets the batch's results (or the error that says
    the broker could not be reached) from ``complete`` once every report is in; settled on ``loop`` only."""

    __slots__ = ("complete", "deadline", "future", "left", "loop", "reports", "thread")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, count: int, deadline: float, complete: Callable[[Reports], None]
    ) -> None:
        self.loop = loop
        self.thread = threading.get_ident()  # the loop's: reports served elsewhere are passed to it
        self.future: asyncio.Future[Sequence[EntryResult]] = loop.create_future()
        self.reports: list[Report | None] = [None] * count
        self.left = count
        self.deadline = deadline  # time.monotonic() after which a missing report means a wedged client
        self.complete = complete

    @property
    def settled(self) -> list[Report]:
        return [report for report in self.reports if report is not None]

    def settle(self, index: int, report: Report) -> None:
        if self.reports[index] is None:
            self.reports[index] = report
            self.left -= 1
            if not self.left:
                self.complete(self)

    def fail_rest(self, report: Report) -> None:
        for index, known in enumerate(self.reports):
            if known is None:
                self.settle(index, report)


__all__ = ["FATAL", "OK", "TOPIC_MISSING", "UNREACHABLE", "Report", "Reports", "classify", "failed"]
