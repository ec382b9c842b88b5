"""Counters the inspector keeps per handler function and per forwarder destination / consumer source."""

from __future__ import annotations

from collections import deque

_LATENCY_SAMPLES = 1024


class HandlerStats:
    __slots__ = ("failures", "handled", "last_error", "latencies")

    def __init__(self) -> None:
        self.handled = 0
        self.failures = 0
        self.last_error: str | None = None
        self.latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)

    def add(self, seconds: float, error: str | None) -> None:
        self.handled += 1
        self.latencies.append(seconds)
        if error is not None:
            self.failures += 1
            self.last_error = error

    def percentile(self, fraction: float) -> float | None:
        samples = sorted(self.latencies)
        if not samples:
            return None
        return samples[min(len(samples) - 1, int(fraction * len(samples)))]


class ChannelStats:
    """A forwarder destination or a consumer source, as seen through the hooks."""

    __slots__ = ("batches", "failures", "last_error", "messages", "reachable")

    def __init__(self) -> None:
        self.batches = 0
        self.messages = 0
        self.failures = 0
        self.reachable: bool | None = None
        self.last_error: str | None = None


__all__ = ["ChannelStats", "HandlerStats"]
