"""Only contiguous finished offsets are committed; revoked partitions never move a new assignment."""

from __future__ import annotations

from fastapi_events.brokers.kafka._offsets import OffsetTracker


def test_commit_moves_over_contiguous_finished_offsets_only() -> None:
    tracker = OffsetTracker()
    tracker.assign([0, 1])
    generations = {offset: tracker.received(0, offset) for offset in range(10, 15)}
    assert tracker.committable() == []
    tracker.finished(0, generations[11], 11)
    tracker.finished(0, generations[12], 12)
    assert tracker.committable() == []  # 10 is still running
    tracker.finished(0, generations[10], 10)
    assert tracker.committable() == [(0, 13)]
    assert tracker.committable() == []  # returned once
    tracker.finished(0, generations[14], 14)
    assert tracker.committable() == []
    tracker.finished(0, generations[13], 13)
    assert tracker.committable() == [(0, 15)]
    assert tracker.in_flight() == 0


def test_revoked_partition_returns_what_to_commit_and_ignores_late_finishes() -> None:
    tracker = OffsetTracker()
    tracker.assign([0])
    old = tracker.received(0, 0)
    late = tracker.received(0, 1)
    assert old is not None
    assert late is not None
    tracker.finished(0, old, 0)
    assert tracker.revoke([0]) == [(0, 1)]
    assert tracker.received(0, 2) is None  # not ours now
    tracker.assign([0])
    new = tracker.received(0, 1)
    tracker.finished(0, late, 1)  # the old assignment's message finishing late
    assert tracker.committable() == []
    assert new is not None
    tracker.finished(0, new, 1)
    assert tracker.committable() == [(0, 2)]


def test_failed_commit_is_restored() -> None:
    tracker = OffsetTracker()
    tracker.assign([3])
    generation = tracker.received(3, 7)
    assert generation is not None
    tracker.finished(3, generation, 7)
    pending = tracker.committable()
    tracker.restore(pending)
    assert tracker.committable() == [(3, 8)]
