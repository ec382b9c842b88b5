"""Counters the inspector keeps per handler function and per forwarder destination / consumer source."""

from __future__ import annotations

import threading
from collections import deque

_LATENCY_SAMPLES = 1024
_ERROR_CHARS = 500
MAX_KEYS = 4096  # distinct handler names / event names / destinations remembered


def describe_error(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not turn into a failure of the handler being observed
        text = f"<{type(exc).__name__} whose str() raised>"
    return f"{type(exc).__name__}: {text}"[:_ERROR_CHARS]


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


class Channels:
    """Every forwarder destination and consumer source seen through the hooks, keyed ``(kind, system, address)``.

    Shared by the live recorder and the history (forwarder batches are counted whether a page is open or not).
    """

    def __init__(self, lock: threading.Lock) -> None:
        self.stats: dict[tuple[str, str, str], ChannelStats] = {}
        self.lock = lock

    def get(self, key: tuple[str, str, str]) -> ChannelStats | None:
        """The counters of ``key``, created on first use (None past ``MAX_KEYS``); call with :attr:`lock` held."""
        stats = self.stats.get(key)
        if stats is None and len(self.stats) < MAX_KEYS:
            stats = self.stats[key] = ChannelStats()
        return stats

    def failed(self, key: tuple[str, str, str], error: str) -> None:
        """A handler failed on a message consumer ``key`` was handling: a failure of the consumer's, not of its
        broker (the consumer retries the message or dead-letters it)."""
        with self.lock:
            stats = self.get(key)
            if stats is not None:
                stats.failures += 1
                stats.last_error = error

    def done(self, key: tuple[str, str, str], size: int, exc: BaseException | None) -> None:
        """A batch of ``size`` messages sent (forwarder) or one handled (consumer), failed with ``exc`` or not."""
        with self.lock:
            stats = self.get(key)
            if stats is None:
                return
            stats.batches += 1
            stats.messages += size
            if exc is None:
                stats.reachable = True
            else:
                stats.failures += 1
                stats.last_error = describe_error(exc)
                # A consumer's handler failing says nothing about the broker; a failed send does.
                if key[0] == "forwarder":
                    stats.reachable = False


__all__ = ["MAX_KEYS", "ChannelStats", "Channels", "HandlerStats", "describe_error"]
