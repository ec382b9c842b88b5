"""Retry policy and per-entry retry logic.

The recording transport below exists only to drive retry timing and entry bookkeeping deterministically;
broker behaviour is tested against moto_server in the other modules.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence

import pytest

from fastapi_events.delivery import (
    DELIVERED,
    EntryResult,
    ForwardHandler,
    OutboundMessage,
    Outcome,
    RetryPolicy,
)
from fastapi_events.errors import ConfigurationError


def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    policy = RetryPolicy(initial_delay=0.1, max_delay=2.0, multiplier=2.0)
    rng = random.Random(1)
    assert [policy.backoff_ceiling(n) for n in (1, 2, 3, 4, 5, 6)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    for attempt in range(1, 50):
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= policy.backoff_ceiling(attempt) for d in delays)
    # Jitter really spreads retries (not a fixed schedule that synchronises producers after an outage).
    assert len({round(policy.delay(5, rng), 6) for _ in range(50)}) > 40
    assert policy.backoff_ceiling(10_000) == 2.0  # no overflow after a very long outage


def test_budget_by_attempts_and_by_elapsed_time() -> None:
    by_attempts = RetryPolicy(max_attempts=3)
    assert not by_attempts.exhausted(2, 0.0, 1e9)
    assert by_attempts.exhausted(3, 0.0, 0.0)
    by_time = RetryPolicy(max_attempts=None, max_elapsed=5.0)
    assert not by_time.exhausted(1000, 100.0, 104.9)
    assert by_time.exhausted(1, 100.0, 105.0)
    forever = RetryPolicy(max_attempts=None, max_elapsed=None)
    assert not forever.exhausted(10**6, 0.0, 1e12)
    with pytest.raises(ConfigurationError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigurationError):
        RetryPolicy(initial_delay=2.0, max_delay=1.0)


class FlakyTransport:
    """Records batches; answers RETRY for messages listed in ``fail`` (a count per event name)."""

    system = "test"
    destination = "recording"
    max_batch_count = 10
    max_batch_bytes = 10_000
    max_message_bytes = 10_000

    def __init__(self, fail: dict[str, int], raise_first: int = 0) -> None:
        self.fail = dict(fail)
        self.raise_first = raise_first
        self.batches: list[tuple[float, list[str]]] = []

    def message_size(self, message: OutboundMessage) -> int:
        return len(message.body)

    async def open(self) -> None:
        return None

    async def send_batch(self, batch: Sequence[OutboundMessage]) -> Sequence[EntryResult]:
        self.batches.append((time.monotonic(), [m.event_name for m in batch]))
        if self.raise_first:
            self.raise_first -= 1
            raise ConnectionError("broker down")
        results = []
        for m in batch:
            if self.fail.get(m.event_name, 0) > 0:
                self.fail[m.event_name] -= 1
                results.append(EntryResult(Outcome.RETRY, "throttled"))
            else:
                results.append(DELIVERED)
        return results

    async def close(self) -> None:
        return None


@pytest.mark.anyio
async def test_only_failed_entries_are_retried_until_delivered() -> None:
    transport = FlakyTransport({"flaky": 2})
    handler = ForwardHandler(transport, retry=RetryPolicy(max_attempts=5, initial_delay=0.01, max_delay=0.05))
    await handler.handle_many([("a", 1), ("flaky", 2), ("b", 3)])
    await handler.flush(5)
    assert transport.batches[0][1] == ["a", "flaky", "b"]
    assert [names for _, names in transport.batches[1:]] == [["flaky"], ["flaky"]]
    stats = handler.stats
    assert (stats.delivered, stats.retried, stats.dead_lettered, stats.queued) == (3, 2, 0, 0)
    await handler.shutdown(1)


@pytest.mark.anyio
async def test_retry_budget_exhausted_becomes_a_dead_letter_with_the_reason() -> None:
    dead: list[tuple[str, str]] = []
    transport = FlakyTransport({"doomed": 100})
    handler = ForwardHandler(
        transport,
        retry=RetryPolicy(max_attempts=3, initial_delay=0.0, max_delay=0.01),
        on_dead_letter=lambda message, reason: dead.append((message.event_name, reason)),
    )
    await handler.handle_many([("doomed", 1), ("fine", 2)])
    await handler.flush(5)
    assert dead == [("doomed", "retry budget exhausted after 3 attempt(s): throttled")]
    assert sum(names.count("doomed") for _, names in transport.batches) == 3
    assert handler.stats.dead_lettered == 1
    assert handler.stats.delivered == 1
    await handler.shutdown(1)


@pytest.mark.anyio
async def test_outages_back_off_but_never_use_up_the_budget() -> None:
    transport = FlakyTransport({}, raise_first=6)
    handler = ForwardHandler(transport, retry=RetryPolicy(max_attempts=1, initial_delay=0.01), reconnect_max_delay=0.05)
    await handler.handle_many([("e", 1)])
    await handler.flush(10)
    # Six failed sends, yet max_attempts=1 did not dead-letter the event: it arrived on the 7th.
    assert len(transport.batches) == 7
    assert handler.stats.delivered == 1
    assert handler.stats.dead_lettered == 0
    gaps = [b[0] - a[0] for a, b in zip(transport.batches, transport.batches[1:], strict=False)]
    assert max(gaps) <= 0.5  # backoff capped by reconnect_max_delay, not the entry policy's 30 s
    await handler.shutdown(1)


class ShortAnsweringTransport(FlakyTransport):
    """Answers one result too few for its first ``short`` batches (a transport bug); with ``buffering``, through
    ``submit`` as a buffering SDK's transport does (the direct hand-over and the sender's submitted rounds)."""

    def __init__(self, short: int, buffering: bool) -> None:
        super().__init__({})
        self.short = short
        if buffering:
            self.submit = self._submit

    async def send_batch(self, batch: Sequence[OutboundMessage]) -> Sequence[EntryResult]:
        results = list(await super().send_batch(batch))
        if self.short:
            self.short -= 1
            return results[1:]
        return results

    def _submit(self, batch: Sequence[OutboundMessage]) -> tuple[int, asyncio.Future[Sequence[EntryResult]]]:
        return len(batch), asyncio.ensure_future(self.send_batch(batch))


@pytest.mark.anyio
@pytest.mark.parametrize("buffering", [False, True], ids=["send_batch", "submit"])
async def test_a_transport_answering_too_few_results_loses_nothing(
    buffering: bool, caplog: pytest.LogCaptureFixture
) -> None:
    transport = ShortAnsweringTransport(short=2, buffering=buffering)
    handler = ForwardHandler(transport, retry=RetryPolicy(max_attempts=1), reconnect_max_delay=0.05)
    await handler.startup()
    for request in range(3):  # later requests may take the direct hand-over to the SDK
        await handler.handle_many([("e", 2 * request), ("e", 2 * request + 1)])
    await handler.flush(10)
    # Whatever was in a short-answered batch is sent again, as after an outage: max_attempts=1 dead-letters none.
    assert (handler.stats.delivered, handler.stats.dead_lettered, handler.stats.queued) == (6, 0, 0)
    assert transport.short == 0
    assert "transport returned 1 results for 2 messages" in caplog.text
    await handler.shutdown(1)


@pytest.mark.anyio
async def test_backoff_spaces_retries_of_an_entry() -> None:
    transport = FlakyTransport({"slow": 3})
    policy = RetryPolicy(max_attempts=10, initial_delay=0.2, max_delay=0.2, multiplier=1.0)
    handler = ForwardHandler(transport, retry=policy)
    started = time.monotonic()
    await handler.handle_many([("slow", 1)])
    await handler.flush(10)
    assert handler.stats.delivered == 1
    # Each retry waits a jittered delay in [0, 0.2]: four sends within the sum of the ceilings.
    assert len(transport.batches) == 4
    assert time.monotonic() - started < 0.6 + 0.5
    await asyncio.sleep(0)
    await handler.shutdown(1)


@pytest.mark.anyio
async def test_a_down_broker_is_not_hammered_through_a_large_backlog() -> None:
    transport = FlakyTransport({}, raise_first=10**9)
    handler = ForwardHandler(transport, reconnect_max_delay=0.2)
    await handler.handle_many([("e", i) for i in range(2000)])
    await asyncio.sleep(1.0)
    # The whole sender pauses after a failed round (capped backoff), instead of trying batch after batch of the
    # backlog against a broker that is down: a few attempts, not hundreds of batches a second.
    rounds = len(transport.batches)  # a round stops at its first failed batch
    assert 2 <= rounds <= 15
    assert handler.stats.delivered == 0
    assert handler.stats.queued == 2000
    transport.raise_first = 0
    await handler.flush(10)
    assert handler.stats.delivered == 2000
    await handler.shutdown(1)


class KeyedFlakyTransport(FlakyTransport):
    """Fails the payload listed in ``fail_payloads`` a number of times; records delivery order of payloads."""

    def __init__(self, fail_payloads: dict[int, int]) -> None:
        super().__init__({})
        self.fail_payloads = dict(fail_payloads)
        self.delivered: list[int] = []

    async def send_batch(self, batch: Sequence[OutboundMessage]) -> Sequence[EntryResult]:
        self.batches.append((time.monotonic(), [m.event_name for m in batch]))
        results = []
        for m in batch:
            payload = int(m.body.decode().split(",")[1].rstrip("]"))
            if self.fail_payloads.get(payload, 0) > 0:
                self.fail_payloads[payload] -= 1
                results.append(EntryResult(Outcome.RETRY, "throttled"))
            else:
                self.delivered.append(payload)
                results.append(DELIVERED)
        return results


@pytest.mark.anyio
async def test_newer_events_of_a_key_do_not_overtake_one_waiting_for_its_retry() -> None:
    transport = KeyedFlakyTransport({1: 2})
    transport.max_batch_count = 1  # one event per batch: the retry's backoff is where overtaking would happen
    handler = ForwardHandler(
        transport,
        key=lambda event: "same-key" if event[1] < 100 else None,
        retry=RetryPolicy(max_attempts=10, initial_delay=0.2, max_delay=0.2, multiplier=1.0),
    )
    await handler.handle_many([("e", 0), ("e", 1), ("e", 2), ("e", 3), ("e", 100)])
    await asyncio.sleep(0.05)
    await handler.handle_many([("e", 4), ("e", 101)])
    await handler.flush(10)
    keyed = [p for p in transport.delivered if p < 100]
    assert keyed == [0, 1, 2, 3, 4]
    # Events without a key are not held back behind the retry.
    assert transport.delivered.index(100) < transport.delivered.index(1)
    assert handler.stats.retried == 2
    await handler.shutdown(1)
