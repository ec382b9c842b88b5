"""What a spool or an outbox keeps about an event, and the administration interface both offer.

One record type serves every tool that lists stored events: ``python -m fastapi_events spool``, the inspector's
dead-letter view and :meth:`SQLAlchemyOutbox.dead_letters`. A spool file (:class:`SpoolAdmin`) and an outbox table
(``OutboxAdmin``) both implement :class:`StoreAdmin`, so the command line treats them alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

PENDING = "pending"
DEAD_LETTERS = "dead_letters"

#: Rows one transaction of an administrator's replay or purge changes at most, and the least pause between two of
#: them (seconds): the app's writers never wait long for an administrator, however large the table.
ADMIN_BATCH = 500
ADMIN_PAUSE = 0.005


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A pending event or a dead letter, as listed by the command line, the inspector and the outbox."""

    PENDING: ClassVar[str] = PENDING
    DEAD_LETTERS: ClassVar[str] = DEAD_LETTERS

    table: str  # PENDING or DEAD_LETTERS
    seq: int
    id: str  # the event id
    destination: str  # a spool's broker destination; for an outbox, the handler(s) that gave up, comma-separated
    event_name: str
    size: int  # bytes of the wire body
    attempts: int
    reason: str  # last error (pending) or why it was dead-lettered
    created_at: float  # epoch seconds it was accepted (pending) or dead-lettered
    replayable: bool = True  # False when there is no wire body (the event could not be encoded)
    payload: Any = None  # the event's payload, only when the listing asked for it

    @property
    def handler(self) -> str:
        """The handler(s) that gave up on an outbox event (the outbox's name for :attr:`destination`)."""
        return self.destination

    @property
    def time(self) -> float:
        """When it was dead-lettered (or accepted, for a pending event)."""
        return self.created_at

    @staticmethod
    def payload_of(body: bytes | str) -> Any:
        return payload_of(body)

    def as_dict(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in self.__slots__}
        if self.payload is None:
            del fields["payload"]
        return fields


def payload_of(body: bytes | str) -> Any:
    """The payload of a wire body (``["name", payload]``); the text itself when it is not one."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        decoded = json.loads(text)
    except ValueError:
        return text
    if isinstance(decoded, list) and len(decoded) == 2 and isinstance(decoded[0], str):
        return decoded[1]
    return decoded


class StoreAdmin(Protocol):
    """Synchronous administration of a spool file or an outbox table (the command line; the inspector's spools).

    ``destination`` narrows every operation to one destination (spool) or handler (outbox). Open one per use and
    close it: an implementation holds a database connection.
    """

    def list_pending(self, destination: str | None = None) -> list[StoredRecord]: ...

    def list_dead(
        self, destination: str | None = None, *, limit: int | None = None, payloads: bool = False
    ) -> list[StoredRecord]:
        """Dead letters, oldest first; with ``limit``, the newest ``limit`` of them (still oldest first)."""
        ...

    def count_dead(self, destination: str | None = None) -> int: ...

    def replay(self, ids: Sequence[str] | None, destination: str | None = None) -> tuple[int, list[StoredRecord]]:
        """Make dead letters (all, or these event ids) pending again: ``(moved, skipped as not replayable)``."""
        ...

    def purge(self, ids: Sequence[str] | None, destination: str | None = None, *, pending: bool = False) -> int:
        """Delete dead letters (all, or these event ids) and, with ``pending=True``, pending events too."""
        ...

    def stats(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def in_batches(transaction: Callable[[], int]) -> int:
    """Run ``transaction`` (one transaction changing at most ``ADMIN_BATCH`` rows) until it changes fewer; return
    how many rows it changed in all.

    One transaction over a large table would hold the database's write lock (SQLite's is the whole file) for as
    long as it takes, and the app's writer, waiting a busy timeout at most, would fail its writes. Between two
    batches the lock is left free for as long as the last batch held it (at least ``ADMIN_PAUSE``), so a waiting
    writer's next retry finds it free about half of the time.
    """
    total = 0
    while True:
        started = time.monotonic()
        changed = transaction()
        total += changed
        if changed < ADMIN_BATCH:
            return total
        time.sleep(max(ADMIN_PAUSE, time.monotonic() - started))


def id_chunks(ids: Sequence[str] | None) -> Iterator[Sequence[str] | None]:
    """``ids`` in chunks of ``ADMIN_BATCH`` (within SQLite's host parameter limit); None (every id) as it is."""
    if ids is None:
        yield None
        return
    for start in range(0, len(ids), ADMIN_BATCH):
        yield ids[start : start + ADMIN_BATCH]


__all__ = [
    "ADMIN_BATCH",
    "ADMIN_PAUSE",
    "DEAD_LETTERS",
    "PENDING",
    "StoreAdmin",
    "StoredRecord",
    "id_chunks",
    "in_batches",
    "payload_of",
]
