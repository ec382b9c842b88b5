"""Which Kafka offsets may be committed: only up to the first message not finished yet.

Messages of one partition finish out of order (different keys run concurrently, retries take time). Committing
offset N tells Kafka "everything below N is done", so the committed position only moves over a contiguous run
of finished offsets; a crash then redelivers the unfinished message and whatever followed it (at least once).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Partition:
    generation: int
    received: deque[int] = field(default_factory=deque)  # offsets handed out, in order, not yet committable
    finished: set[int] = field(default_factory=set)
    commit_at: int | None = None  # next offset to commit (last contiguous finished + 1), if not committed yet
    done_upto: int | None = None  # last contiguous finished + 1, committed or not


class OffsetTracker:
    """Thread-safe: the consumer's worker thread records and revokes, the event loop marks offsets finished.

    Every assignment of a partition gets a new generation, so that a message finishing after its partition
    was revoked (and maybe assigned back) cannot move the position of the new assignment.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._partitions: dict[int, _Partition] = {}
        self._generation = 0

    def assign(self, partitions: list[int]) -> None:
        with self._lock:
            for partition in partitions:
                self._generation += 1
                self._partitions[partition] = _Partition(self._generation)

    def revoke(self, partitions: list[int]) -> list[tuple[int, int]]:
        """Forget ``partitions``; returns their ``(partition, offset)`` still to commit."""
        with self._lock:
            out: list[tuple[int, int]] = []
            for partition in partitions:
                state = self._partitions.pop(partition, None)
                if state is not None and state.commit_at is not None:
                    out.append((partition, state.commit_at))
            return out

    def received(self, partition: int, offset: int) -> int | None:
        """Record a message handed to the runner; returns its generation (``None``: not assigned)."""
        with self._lock:
            state = self._partitions.get(partition)
            if state is None:
                return None
            state.received.append(offset)
            return state.generation

    def finished(self, partition: int, generation: int, offset: int) -> None:
        with self._lock:
            state = self._partitions.get(partition)
            if state is None or state.generation != generation:
                return  # revoked meanwhile: the new owner handles it again
            state.finished.add(offset)
            while state.received and state.received[0] in state.finished:
                done = state.received.popleft()
                state.finished.discard(done)
                state.commit_at = state.done_upto = done + 1

    def committable(self) -> list[tuple[int, int]]:
        """``(partition, offset)`` pairs to commit now; each is returned once."""
        with self._lock:
            out: list[tuple[int, int]] = []
            for partition, state in self._partitions.items():
                if state.commit_at is not None:
                    out.append((partition, state.commit_at))
                    state.commit_at = None
            return out

    def restore(self, pending: list[tuple[int, int]]) -> None:
        """Put back offsets whose commit failed, unless a later one is waiting already."""
        with self._lock:
            for partition, offset in pending:
                state = self._partitions.get(partition)
                if state is not None and (state.commit_at is None or state.commit_at < offset):
                    state.commit_at = offset

    def unfinished_from(self) -> dict[int, int]:
        """Per assigned partition, the first offset not finished yet (where a restart would resume).

        Partitions that handed out nothing since they were assigned are left out: the position is unknown.
        """
        with self._lock:
            out: dict[int, int] = {}
            for partition, state in self._partitions.items():
                if state.received:
                    out[partition] = state.received[0]
                elif state.done_upto is not None:
                    out[partition] = state.done_upto
            return out

    def in_flight(self) -> int:
        with self._lock:
            return sum(len(state.received) for state in self._partitions.values())


__all__ = ["OffsetTracker"]
