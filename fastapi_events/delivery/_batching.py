"""Splitting messages into batches a broker accepts: by count and by bytes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class Batches(Generic[T]):
    batches: list[list[T]] = field(default_factory=list)
    oversize: list[tuple[T, int]] = field(default_factory=list)  # (item, its size): can never be sent


def split_batches(
    items: Sequence[T],
    *,
    size: Callable[[T], int],
    max_count: int,
    max_bytes: int,
    max_message_bytes: int,
) -> Batches[T]:
    """Greedy, order-preserving split: each batch has <= ``max_count`` items and <= ``max_bytes`` in total.

    An item over ``max_message_bytes`` (or alone over ``max_bytes``) is returned in ``oversize`` rather than
    failing the batch it would have been part of: only that event is lost to the broker's limit.
    """
    if max_count < 1 or max_bytes < 1:
        raise ValueError("max_count and max_bytes must be >= 1")
    result: Batches[T] = Batches()
    current: list[T] = []
    current_bytes = 0
    for item in items:
        item_bytes = size(item)
        if item_bytes > max_message_bytes or item_bytes > max_bytes:
            result.oversize.append((item, item_bytes))
            continue
        if current and (len(current) >= max_count or current_bytes + item_bytes > max_bytes):
            result.batches.append(current)
            current, current_bytes = [], 0
        current.append(item)
        current_bytes += item_bytes
    if current:
        result.batches.append(current)
    return result


__all__ = ["Batches", "split_batches"]
