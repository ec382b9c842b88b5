"""Per-key order across retries: a newer event never overtakes an older one of the same key that waits to be
retried (SQS FIFO message groups, Pub/Sub ordering keys, Kafka partitions by key)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._store import Entry, Retry


@dataclass(slots=True)
class _Block:
    seq: int  # the oldest entry of the key that waits for a retry
    until: float  # when it is due again


class KeyOrder:
    """Holds back entries whose key has an older entry waiting for its retry.

    Held-back entries are rescheduled for the blocker's due time (without using up their retry budget), so they
    come back in the same round as the blocker and, stores being ordered by sequence, behind it. Entries without
    a key are never held back. Entries of one key sent in the same batch can still be reordered by a broker that
    fails some of them; this only prevents overtaking across a retry's backoff.
    """

    def __init__(self) -> None:
        self._blocks: dict[str, _Block] = {}

    def __len__(self) -> int:
        return len(self._blocks)

    def hold_back(self, entries: Sequence[Entry]) -> tuple[list[Entry], list[Retry]]:
        """Split ``entries`` into those to send now and those to reschedule behind their key's blocker."""
        if not self._blocks:
            return list(entries), []
        send: list[Entry] = []
        held: list[Retry] = []
        for entry in entries:
            key = entry.message.key
            block = self._blocks.get(key) if key is not None else None
            if block is not None and entry.seq > block.seq:
                held.append(Retry(entry, block.until))
            else:
                send.append(entry)
        return send, held

    def update(self, retries: Iterable[Retry], resolved: Iterable[Entry]) -> None:
        """Record this round's outcome: retried entries block their key, resolved blockers release it."""
        for entry in resolved:
            key = entry.message.key
            if key is not None and (block := self._blocks.get(key)) is not None and block.seq == entry.seq:
                del self._blocks[key]
        for retry in retries:
            key = retry.entry.message.key
            if key is None:
                continue
            block = self._blocks.get(key)
            if block is None or retry.entry.seq <= block.seq:
                self._blocks[key] = _Block(retry.entry.seq, retry.next_attempt_at)

    @staticmethod
    def spans_batches(batches: Sequence[Sequence[Entry]]) -> bool:
        """True when entries of one key are spread over several batches (they must then go one after another)."""
        first_batch: dict[str, int] = {}
        for index, batch in enumerate(batches):
            for entry in batch:
                key = entry.message.key
                if key is not None and first_batch.setdefault(key, index) != index:
                    return True
        return False

    def clear(self) -> None:
        self._blocks.clear()


__all__ = ["KeyOrder"]
