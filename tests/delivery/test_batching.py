"""Batches never exceed a broker's count and size limits; one oversize message fails alone."""

from __future__ import annotations

from fastapi_events.delivery._batching import split_batches


def test_split_by_count_and_bytes_preserving_order() -> None:
    sizes = [4, 4, 4, 4, 4, 9, 1, 1]
    result = split_batches(
        list(range(len(sizes))), size=lambda i: sizes[i], max_count=3, max_bytes=10, max_message_bytes=10
    )
    assert result.batches == [[0, 1], [2, 3], [4], [5, 6], [7]]
    assert all(len(b) <= 3 and sum(sizes[i] for i in b) <= 10 for b in result.batches)
    assert [i for b in result.batches for i in b] == list(range(len(sizes)))
    assert result.oversize == []


def test_count_limit_alone() -> None:
    result = split_batches(list(range(25)), size=lambda i: 1, max_count=10, max_bytes=1000, max_message_bytes=1000)
    assert [len(b) for b in result.batches] == [10, 10, 5]


def test_oversize_message_is_set_aside_and_the_others_still_batch() -> None:
    sizes = {"a": 5, "huge": 50, "b": 5}
    result = split_batches(
        ["a", "huge", "b"], size=sizes.__getitem__, max_count=10, max_bytes=100, max_message_bytes=20
    )
    assert result.batches == [["a", "b"]]
    assert result.oversize == [("huge", 50)]
