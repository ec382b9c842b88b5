"""What becomes of a row after a delivery round: finished, retried later, or dead-lettered (pure logic, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from ..delivery import RetryPolicy
from ._store import Change, Record
from ._table import DEAD, PENDING
from ._targets import Failure


@dataclass(frozen=True, slots=True)
class Dead:
    """Handlers that gave up on an event in this round, for the log and the dead-letter hooks."""

    record: Record
    handlers: tuple[str, ...]
    reason: str


def judge(
    record: Record,
    verdicts: dict[str, Failure | None],
    policy: RetryPolicy,
    now: float,
    outage_delay: float,
) -> tuple[Change | None, Dead | None]:
    """``(None, None)`` when every handler has the event; else the row's new state (and who gave up)."""
    done = record.done | {name for name, failure in verdicts.items() if failure is None}
    failures = {name: failure for name, failure in verdicts.items() if failure is not None}
    dead = {name: f for name, f in failures.items() if f.permanent}
    retry = {name: f for name, f in failures.items() if not f.permanent}
    attempts, first_failure_at = record.attempts, record.first_failure_at
    counted = any(not f.outage for f in retry.values())
    if counted:
        attempts += 1
        first_failure_at = first_failure_at if first_failure_at is not None else now
        if policy.exhausted(attempts, first_failure_at, now):
            dead.update(retry)
            retry = {}
    if not retry and not dead and not record.failed:
        return None, None
    reasons = {**retry, **dead}
    last_error = "; ".join(f"{name}: {f.reason}" for name, f in sorted(reasons.items())) or None
    failed = record.failed | set(dead)
    given_up = None
    if dead:
        given_up = Dead(record, tuple(sorted(dead)), "; ".join(f"{n}: {dead[n].reason}" for n in sorted(dead)))
    if retry:
        delay = policy.delay(attempts) if counted else outage_delay
        change = Change(
            record.seq, PENDING, sorted(done), sorted(failed), attempts, first_failure_at, now + delay, last_error, None
        )
    else:
        change = Change(
            record.seq, DEAD, sorted(done), sorted(failed), attempts, first_failure_at, now, last_error, now
        )
    return change, given_up


__all__ = ["Dead", "judge"]
