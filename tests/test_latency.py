"""The handler latency histogram: percentiles within 1/16 of the run times, in constant memory, every run timed
at first and one in ``STRIDE`` once ``EXACT`` were."""

from __future__ import annotations

import random

import pytest

from fastapi_events import _hooks
from fastapi_events._latency import BUCKETS, EXACT, STRIDE, Latency
from fastapi_events.handlers import local
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.typing import Event


def true_percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1e9


def run(latency: Latency, values: list[int]) -> int:
    """What LocalHandler does for each run: time it when due. Returns how many were timed."""
    timed = 0
    for value in values:
        if latency.due():
            latency.add(value)
            timed += 1
    return timed


def test_the_first_runs_are_all_timed_within_a_sixteenth() -> None:
    rng = random.Random(7)
    # From sub-microsecond runs to multi-second ones, log-uniformly.
    values = [int(10 ** rng.uniform(1, 10)) for _ in range(EXACT)]
    latency = Latency()
    assert run(latency, values) == EXACT
    assert latency.total == EXACT
    for fraction in (0.0, 0.5, 0.9, 0.99, 1.0):
        got = latency.percentile(fraction)
        want = true_percentile(values, fraction)
        assert got is not None
        assert abs(got - want) <= want / 16 + 1e-9, (fraction, got, want)


def test_then_one_run_in_stride_is_timed_and_stands_for_stride_runs() -> None:
    rng = random.Random(8)
    values = [rng.choice((1_000_000, 2_000_000, 50_000_000)) for _ in range(EXACT + 80_000)]
    latency = Latency()
    timed = run(latency, values)
    assert timed == EXACT + 80_000 // STRIDE
    assert abs(latency.total - len(values)) < STRIDE  # the count of runs is kept
    # Every STRIDE-th run of a shuffled mix: the percentiles land on the same durations.
    assert latency.percentile(0.1) == latency.percentile(0.3)
    for fraction in (0.1, 0.5, 0.99):
        got = latency.percentile(fraction)
        want = true_percentile(values, fraction)
        assert got is not None
        assert abs(got - want) <= want / 16, (fraction, got, want)


def test_no_run_no_percentile_and_exact_below_sixteen_nanoseconds() -> None:
    latency = Latency()
    assert latency.percentile(0.5) is None
    run(latency, list(range(16)))
    assert [latency.percentile(i / 16) for i in range(16)] == [i / 1e9 for i in range(16)]


def test_memory_does_not_grow_with_runs_or_their_length() -> None:
    latency = Latency()
    for value in (1, 10**6, 10**12, 10**14, 10**18):  # the longest beyond what the buckets reach
        run(latency, [value] * 1000)
    assert len(latency.counts) == BUCKETS
    assert abs(latency.total - 5000) < STRIDE
    assert latency.counts[-1] >= 1900  # runs longer than the last bucket's start count there
    p99 = latency.percentile(0.99)
    assert p99 is not None
    assert p99 > 1000  # seconds: the long runs are not lost


@pytest.mark.anyio
async def test_a_local_handler_samples_whole_batches_and_keeps_the_percentiles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A clock the handler itself moves: each run "takes" 1 us or 40 us, whatever the machine does meanwhile.
    now = [1]
    monkeypatch.setattr(local, "clock", lambda: now[0])
    token = object()
    _hooks.time_handlers.append(token)  # what the inspector's history does: LocalHandler times its runs
    try:
        latency = await _run_batches(now)
    finally:
        _hooks.time_handlers.remove(token)
    runs = BATCHES * 5
    assert abs(latency.total - runs) <= 5 * STRIDE * 4  # a timed batch stands for STRIDE batches
    fast, slow = latency.percentile(0.5), latency.percentile(0.95)
    assert fast is not None
    assert slow is not None
    assert abs(fast - 1e-6) <= 1e-6 / 16
    assert abs(slow - 40e-6) <= 40e-6 / 16
    assert latency.percentile(0.78) == fast
    assert latency.percentile(0.82) == slow


BATCHES = 4_000


async def _run_batches(now: list[int]) -> Latency:
    handler = LocalHandler()

    @handler.register(event_name="work")
    async def work(event: Event) -> None:
        now[0] += 40_000 if event[1]["slow"] else 1_000

    for b in range(BATCHES):
        # Five runs a batch, one in five slow: 20 % of the runs, spread over every batch.
        await handler.handle_many([("work", {"slow": i == b % 5}) for i in range(5)])
    return handler.registrations[0].latency
