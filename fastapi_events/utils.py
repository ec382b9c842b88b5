"""Small helpers kept importable from their 0.x location."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")

_FALSE = frozenset({"", "0", "false", "f", "no", "n", "off"})


def strtobool(val: str | None) -> bool:
    """``True`` for any value but an empty/false-like one (``0``, ``false``, ``no``, ``off``...)."""
    return val is not None and val.strip().lower() not in _FALSE


def chunk(it: Iterable[T], size: int) -> Iterator[list[T]]:
    """Split ``it`` into lists of at most ``size`` items."""
    iterator = iter(it)
    while batch := list(islice(iterator, size)):
        yield batch


__all__ = ["chunk", "strtobool"]
