"""Retry budget and backoff for transient delivery failures."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and/or elapsed time.

    ``max_attempts`` counts sends the broker answered with a transient error for that entry (including the
    first); ``max_elapsed`` is measured from the first such failure. ``None`` disables a bound; with both
    ``None`` an entry is retried for as long as the process lives. Broker outages (the send itself failed)
    never consume the budget - they are waited out with the same backoff, since events outliving an outage is
    the point of this layer.
    """

    max_attempts: int | None = 10
    max_elapsed: float | None = None
    initial_delay: float = 0.1
    max_delay: float = 30.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ConfigurationError("RetryPolicy.max_attempts must be >= 1 or None")
        if self.max_elapsed is not None and self.max_elapsed < 0:
            raise ConfigurationError("RetryPolicy.max_elapsed must be >= 0 or None")
        if self.initial_delay < 0 or self.max_delay < self.initial_delay or self.multiplier < 1:
            raise ConfigurationError("RetryPolicy needs 0 <= initial_delay <= max_delay and multiplier >= 1")

    def backoff_ceiling(self, attempt: int) -> float:
        """Upper bound of the delay after the ``attempt``-th failure (1-based)."""
        exponent = max(0, attempt - 1)
        # Cap the exponent so that a long outage cannot overflow the float.
        return float(min(self.max_delay, self.initial_delay * self.multiplier ** min(exponent, 64)))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, ceiling]; spreads retries of many producers after a shared outage."""
        return (rng or _rng).uniform(0.0, self.backoff_ceiling(attempt))

    def exhausted(self, attempts: int, first_failure_at: float | None, now: float) -> bool:
        """True when an entry that failed ``attempts`` times must not be retried again."""
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return True
        return (
            self.max_elapsed is not None and first_failure_at is not None and now - first_failure_at >= self.max_elapsed
        )


_rng = random.Random()

__all__ = ["RetryPolicy"]
