"""A forwarder's view of its broker being unreachable: the pause between attempts and a log that never goes quiet."""

from __future__ import annotations

import logging
import random
import time

from ..errors import ConfigurationError
from ._retry import RetryPolicy

logger = logging.getLogger("fastapi_events.delivery")


class Outage:
    """Consecutive failures to reach the broker (open or send), the backoff between attempts, and the log.

    The first failure is logged at once, then at least every ``log_interval`` seconds for as long as it lasts -
    an outage that goes quiet in the log looks like a healthy forwarder - and the recovery is logged with how
    long the forwarder could not deliver.
    """

    def __init__(self, where: str, destination: str, max_delay: float, log_interval: float) -> None:
        self.where = where
        self.destination = destination
        self.log_interval = log_interval
        self._policy = RetryPolicy(None, None, 0.05, max(0.05, max_delay))
        self.failures = 0
        self.since: float | None = None  # time.monotonic() of the first failure of the current outage
        self._logged_at = 0.0

    @property
    def active(self) -> bool:
        return self.failures > 0

    def failed(self, what: str, error: str, queued: int, level: int = logging.WARNING) -> float:
        """Record one failed attempt; returns how long to wait before the next one."""
        now = time.monotonic()
        self.failures += 1
        if self.since is None:
            self.since = now
        if self.failures == 1 or now - self._logged_at >= self.log_interval:
            self._logged_at = now
            logger.log(
                level,
                "%s: cannot %s %s for %.0fs (%d attempt(s)), %d event(s) waiting: %s",
                self.where,
                what,
                self.destination,
                now - self.since,
                self.failures,
                queued,
                error,
                extra={"destination": self.destination},
            )
        # Equal jitter: never (almost) zero, so consecutive failures really back off, and never above the
        # ceiling, which bounds how long after the broker's return the held events wait.
        ceiling = self._policy.backoff_ceiling(self.failures)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def open_failed(self, exc: Exception, queued: int) -> float:
        """Record a failed ``transport.open()``; returns how long to wait before the next attempt."""
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, (ConfigurationError, TypeError)):
            # The SDK refused a setting: no broker coming back fixes that. Loud, and kept up while it lasts.
            return self.failed("open", f"configuration rejected ({error}); fix the settings", queued, logging.ERROR)
        return self.failed("open", error, queued)

    def still_waiting(self, seconds: float, queued: int) -> None:
        """A send has not returned for ``seconds`` (the broker accepts connections but does not answer)."""
        now = time.monotonic()
        if now - self._logged_at >= self.log_interval:
            self._logged_at = now
            logger.warning(
                "%s: no answer from %s for %.0fs, %d event(s) waiting",
                self.where,
                self.destination,
                seconds,
                queued,
                extra={"destination": self.destination},
            )

    def recovered(self, queued: int) -> None:
        if self.since is not None:
            logger.warning(
                "%s: %s reachable again after %.1fs (%d event(s) still waiting)",
                self.where,
                self.destination,
                time.monotonic() - self.since,
                queued,
                extra={"destination": self.destination},
            )
        self.failures = 0
        self.since = None


__all__ = ["Outage"]
