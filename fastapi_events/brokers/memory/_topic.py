"""The state of one in-memory topic: messages ready, leased, waiting to come back, and what became of them.

Shared by the transport (a forwarder's event loop, maybe in a TestClient's thread) and the sources (the test's
loop), so every change happens under the broker's lock and nothing here awaits.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ...codec import decode_event
from ...errors import MalformedMessageError


def decoded(body: bytes, fallback_name: str) -> tuple[str, Any]:
    """``(event_name, payload)`` of a body; the raw body as payload when it is not the codec's."""
    try:
        name, payload = decode_event(body)
    except MalformedMessageError:
        return fallback_name, body
    return str(name), payload


OPERATIONS = ("send", "open", "receive", "ack", "dead_letter")


@dataclass(slots=True)
class StoredMessage:
    id: str
    body: bytes
    attributes: dict[str, str]
    key: str | None = None
    deliveries: int = 0  # how often a source received it: the attempt number, as SQS's receive count


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One dead letter of a topic, from the forwarder (``stage="forward"``) or a consumer (``"consume"``)."""

    event_name: str
    payload: Any  # the decoded payload; the raw body (bytes) when it could not be decoded
    reason: str
    message_id: str
    attempts: int
    stage: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Failure:
    """An injected failure: the next ``count`` uses of ``operation`` fail (``permanent`` only for "send")."""

    operation: str
    count: int
    permanent: bool = False


class Topic:
    def __init__(self, name: str, lock: threading.Lock) -> None:
        self.name = name
        self.lock = lock
        self.ready: deque[StoredMessage] = deque()
        self.leased: dict[str, StoredMessage] = {}
        self.later: list[tuple[float, int, StoredMessage]] = []  # handed back, due again at a time
        self.dead: list[DeadLetterRecord] = []
        self.acked: list[str] = []
        self.released: list[str] = []
        self.handed_back: list[tuple[str, float]] = []
        self.failures: list[Failure] = []
        self.unreachable = False
        self.send_delay = 0.0  # seconds each forwarder batch takes to be accepted (a slow broker)
        self._order = itertools.count()

    # -- failures (caller holds the lock) --------------------------------------------------------------------
    def take_failure(self, operation: str) -> Failure | None:
        for failure in self.failures:
            if failure.operation == operation and failure.count > 0:
                failure.count -= 1
                if failure.count == 0:
                    self.failures.remove(failure)
                return failure
        return None

    # -- moving messages (caller holds the lock) -------------------------------------------------------------
    def due(self, now: float) -> None:
        while self.later and self.later[0][0] <= now:
            self.ready.append(heapq.heappop(self.later)[2])

    def take(self, limit: int, now: float) -> list[StoredMessage]:
        self.due(now)
        taken: list[StoredMessage] = []
        while self.ready and len(taken) < limit:
            message = self.ready.popleft()
            message.deliveries += 1
            self.leased[message.id] = message
            taken.append(message)
        return taken

    def settle(self, message_id: str) -> StoredMessage | None:
        return self.leased.pop(message_id, None)

    def requeue(self, message_id: str) -> None:
        """Deliver again now, before the others (a release, or a lease given up)."""
        message = self.leased.pop(message_id, None)
        if message is not None:
            self.ready.appendleft(message)

    def later_by(self, message_id: str, delay: float) -> None:
        message = self.leased.pop(message_id, None)
        if message is not None:
            heapq.heappush(self.later, (time.monotonic() + delay, next(self._order), message))

    def idle(self) -> bool:
        """Nothing left to consume: none ready, none leased, none waiting to come back."""
        return not (self.ready or self.leased or self.later)

    def held(self) -> int:
        return len(self.ready) + len(self.leased) + len(self.later)


__all__ = ["OPERATIONS", "DeadLetterRecord", "Failure", "StoredMessage", "Topic", "decoded"]
