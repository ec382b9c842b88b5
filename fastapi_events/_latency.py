"""Handler run times since start in constant memory: a histogram of fixed logarithmic buckets per registration.

Filled by :class:`~fastapi_events.handlers.local.LocalHandler` while something wants the times (the inspector's
history appends a token to :data:`fastapi_events._hooks.time_handlers`), read back as percentiles. Each power
of two of nanoseconds is split in eight buckets, so a percentile is off by at most 1/16 of its value (the
bucket's middle is reported), whatever the load; a run longer than the last bucket counts in it.
"""

from __future__ import annotations

import time

#: Runs timed one by one, before one in ``STRIDE`` is.
EXACT = 1024
STRIDE = 32
BUCKETS = 352  # 44 powers of two of eight buckets each: runs up to 2**43 ns (2.4 hours) apart

#: The clock the runs are timed with (integer nanoseconds: no float rounding in the bucket index).
clock = time.perf_counter_ns


class Latency:
    """Counts of handler runs per duration bucket. Two threads adding at once may lose a count, nothing worse
    (sync handlers run in worker threads): a lock would cost more than the count is worth."""

    __slots__ = ("_counts", "_samples", "_skip", "_stride")

    def __init__(self) -> None:
        # Made at the first run timed: every registration has one, most apps never time their handlers.
        self._counts: list[int] | None = None
        self._samples = 0
        self._skip = 0  # runs (or batches) to leave untimed before the next timed one
        self._stride = 1  # runs each timed one stands for

    def due(self) -> bool:
        """Whether to time this run, or this batch of runs (every run of it, each counted ``STRIDE`` times): each
        of the first ``EXACT`` runs, then one run or batch in ``STRIDE``. Two clock reads and a bucket cost about
        as much as a no-op handler's run; sampled, a busy handler's percentiles stay as good (thousands of
        samples an hour at one event a second) for a thirty-second of the cost, and asking once per batch spares
        the untimed runs even the asking."""
        if self._skip:
            self._skip -= 1
            return False
        return True

    def add(self, nanoseconds: int) -> None:
        """A run of ``nanoseconds`` that :meth:`due` chose to time."""
        counts = self._counts
        if counts is None:
            counts = self._counts = [0] * BUCKETS
        # Eight buckets per bit length, told apart by the four leading bits (8..15): no branch on the size.
        length = nanoseconds.bit_length()
        index = (length << 3) + ((nanoseconds << 4) >> length)
        counts[index if index < BUCKETS else BUCKETS - 1] += self._stride
        self._samples += 1
        if self._samples >= EXACT:
            self._stride = STRIDE
        self._skip = self._stride - 1

    @property
    def counts(self) -> list[int]:
        """Runs per bucket (a copy)."""
        return [0] * BUCKETS if self._counts is None else list(self._counts)

    @property
    def total(self) -> int:
        """Runs counted: exact for the first ``EXACT``, then within a few ``STRIDE``s."""
        return sum(self.counts)

    def percentile(self, fraction: float) -> float | None:
        """Seconds under which ``fraction`` of the runs took (the middle of the bucket holding that run), or None
        before the first run."""
        counts = self.counts  # a snapshot: handlers may be adding meanwhile
        total = sum(counts)
        if not total:
            return None
        rank = min(total - 1, int(fraction * total))
        seen = 0
        for index, count in enumerate(counts):
            seen += count
            if seen > rank:
                return _middle(index) / 1e9
        return None  # pragma: no cover - rank < total


def _middle(index: int) -> float:
    """The middle, in nanoseconds, of the durations counted in bucket ``index``."""
    length, leading = divmod(index, 8)
    length -= 1  # the leading bits were 8..15: one more eighth of the bucket's bit length
    leading += 8
    if length <= 0:
        return 0.0
    if length <= 4:  # at most four bits: the leading bits are the whole duration
        return float(leading >> (4 - length))
    low = leading << (length - 4)
    return low + ((1 << (length - 4)) - 1) / 2


__all__ = ["BUCKETS", "EXACT", "STRIDE", "Latency", "clock"]
