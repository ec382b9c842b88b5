"""The handler latency histogram: percentiles within 1/16 of the true run time, in constant memory."""

from __future__ import annotations

import random

from fastapi_events._latency import BUCKETS, Latency


def true_percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1e9


def test_percentiles_are_within_a_sixteenth_of_the_run_times() -> None:
    rng = random.Random(7)
    # From sub-microsecond runs to multi-second ones, log-uniformly.
    values = [int(10 ** rng.uniform(1, 10)) for _ in range(20_000)]
    latency = Latency()
    for value in values:
        latency.add(value)
    assert latency.total == len(values)
    for fraction in (0.0, 0.5, 0.9, 0.99, 1.0):
        got = latency.percentile(fraction)
        want = true_percentile(values, fraction)
        assert got is not None
        assert abs(got - want) <= want / 16 + 1e-9, (fraction, got, want)


def test_no_run_no_percentile_and_exact_below_sixteen_nanoseconds() -> None:
    latency = Latency()
    assert latency.percentile(0.5) is None
    for value in range(16):
        latency.add(value)
    assert [latency.percentile(i / 16) for i in range(16)] == [i / 1e9 for i in range(16)]


def test_memory_does_not_grow_with_runs_or_their_length() -> None:
    latency = Latency()
    for value in (1, 10**6, 10**12, 10**14, 10**18):  # the longest beyond what the buckets reach
        for _ in range(1000):
            latency.add(value)
    assert len(latency.counts) == BUCKETS
    assert latency.total == 5000
    assert latency.counts[-1] >= 2000  # runs longer than the last bucket's start count there
    p99 = latency.percentile(0.99)
    assert p99 is not None
    assert p99 > 1000  # seconds: the long runs are not lost
