"""Every SQL statement of the outbox, each a function of a sync ``Connection`` (run through ``Database.run``).

Claiming is one ``UPDATE ... RETURNING`` statement: on PostgreSQL over a ``SELECT ... FOR UPDATE SKIP LOCKED``
CTE, so that concurrent relays never wait for nor take each other's rows; on SQLite the statement itself holds
the database's write lock. A claim is a lease (owner + expiry): every later write of the claimer is conditional
on still owning the row, so a relay that stalled past its lease cannot overwrite the work of the relay that took
the row over.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..delivery import StoredRecord
from ._table import DEAD, DONE, PENDING


@dataclass(slots=True)
class Record:
    """A claimed (or just committed) outbox row."""

    seq: int
    event_id: str
    event_name: str
    body: str
    headers: dict[str, str] | None
    key: str | None
    created_at: float
    done: set[str] = field(default_factory=set)  # handlers that have the event
    failed: set[str] = field(default_factory=set)  # handlers that dead-lettered it (skipped until replayed)
    attempts: int = 0
    first_failure_at: float | None = None

    @property
    def skip(self) -> set[str]:
        return self.done | self.failed


@dataclass(frozen=True, slots=True)
class Change:
    """The new state of a row after a delivery round that did not finish it."""

    seq: int
    state: str
    done: Sequence[str]
    failed: Sequence[str]
    attempts: int
    first_failure_at: float | None
    next_attempt_at: float
    last_error: str | None
    finished_at: float | None


def _columns(t: sa.Table) -> list[sa.Column[Any]]:
    c = t.c
    return [
        c.seq,
        c.event_id,
        c.event_name,
        c.body,
        c.headers,
        c.key,
        c.created_at,
        c.done_handlers,
        c.failed_handlers,
        c.attempts,
        c.first_failure_at,
    ]


def _record(row: Sequence[Any]) -> Record:
    seq, event_id, name, body, headers, key, created_at, done, failed, attempts, first_failure_at = row
    return Record(
        seq,
        event_id,
        name,
        body,
        json.loads(headers) if headers else None,
        key,
        created_at,
        _names(done),
        _names(failed),
        attempts,
        first_failure_at,
    )


def _names(text: str | None) -> set[str]:
    # Almost every claimed row is new: skip the JSON parser for the empty list.
    return set(json.loads(text)) if text and text != "[]" else set()


def insert(conn: sa.Connection, t: sa.Table, rows: list[dict[str, Any]]) -> None:
    conn.execute(t.insert(), rows)


def insert_once(conn: sa.Connection, t: sa.Table, row: dict[str, Any]) -> int | None:
    """Insert a row with a caller-chosen event id unless an undelivered one has it; its ``seq``, or ``None``."""
    event_id = row["event_id"]
    # A delivered event kept for the retention period does not hold on to its id.
    conn.execute(sa.delete(t).where(t.c.event_id == event_id, t.c.state == DONE))
    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        module = postgresql if dialect == "postgresql" else sqlite
        stmt = module.insert(t).values(row).on_conflict_do_nothing(index_elements=[t.c.event_id])
        seq: int | None = conn.execute(stmt.returning(t.c.seq)).scalar_one_or_none()
        return seq
    try:
        with conn.begin_nested():  # a savepoint: the duplicate must not abort the application's transaction
            return int(conn.execute(t.insert().values(row).returning(t.c.seq)).scalar_one())
    except sa.exc.IntegrityError:
        return None


def cancel(conn: sa.Connection, t: sa.Table, ids: Sequence[str]) -> int:
    """Delete undelivered events by id; returns how many. A relay already handing one over still finishes."""
    where = sa.and_(t.c.event_id.in_(list(ids)), t.c.state == PENDING)
    return conn.execute(sa.delete(t).where(where)).rowcount or 0


def next_due(conn: sa.Connection, t: sa.Table, now: float) -> float | None:
    """The earliest time after ``now`` a pending row becomes claimable.

    That is a row's due time (a delayed event, a retry) or, for a due row leased to a relay, its lease expiry: a
    relay that died holding it sends no wake-up, and the row is not to wait for a poll interval after that.
    """
    c = t.c
    pending = c.state == PENDING
    # Two index range scans on (state, next_attempt_at); leased due rows are the ones in flight: few.
    upcoming = sa.select(sa.func.min(c.next_attempt_at)).where(pending, c.next_attempt_at > now)
    held = sa.select(sa.func.min(c.lease_until)).where(pending, c.next_attempt_at <= now, c.lease_until >= now)
    first, lease = conn.execute(sa.select(upcoming.scalar_subquery(), held.scalar_subquery())).one()
    times = [float(x) for x in (first, lease) if x is not None]
    return min(times) if times else None


def notify(conn: sa.Connection, channel: str) -> None:
    # pg_notify is transactional: listeners are woken when (and only if) the transaction commits.
    conn.execute(sa.select(sa.func.pg_notify(channel, "")))


def claim(
    conn: sa.Connection, t: sa.Table, owner: str, now: float, lease: float, limit: int, postgres: bool
) -> list[Record]:
    """Lease up to ``limit`` due rows, oldest first; of the rows sharing a key only the oldest unfinished one."""
    row = t.alias("candidate")
    earlier = t.alias("earlier")
    earlier_pending = (
        sa.select(earlier.c.seq)
        .where(earlier.c.key == row.c.key, earlier.c.seq < row.c.seq, earlier.c.state == PENDING)
        .exists()
    )
    pick = (
        sa.select(row.c.seq)
        .where(
            row.c.state == PENDING,
            row.c.next_attempt_at <= now,
            sa.or_(row.c.lease_until.is_(None), row.c.lease_until < now),
            sa.or_(row.c.key.is_(None), ~earlier_pending),
        )
        .order_by(row.c.seq)
        .limit(limit)
    )
    values = {"lease_owner": owner, "lease_until": now + lease}
    if postgres:
        claimable = pick.with_for_update(skip_locked=True).cte("claimable")
        stmt = sa.update(t).where(t.c.seq == claimable.c.seq).values(values)
    else:
        stmt = sa.update(t).where(t.c.seq.in_(pick.scalar_subquery())).values(values)
    records = [_record(r) for r in conn.execute(stmt.returning(*_columns(t)))]
    records.sort(key=lambda r: r.seq)
    return records


def claim_or_next(
    conn: sa.Connection, t: sa.Table, owner: str, now: float, lease: float, limit: int, postgres: bool
) -> tuple[list[Record], float | None]:
    """:func:`claim`; when nothing is due, the time something will be (in the same transaction: no gap)."""
    records = claim(conn, t, owner, now, lease, limit, postgres)
    return records, None if records else next_due(conn, t, now)


def renew(conn: sa.Connection, t: sa.Table, owner: str, seqs: Sequence[int], until: float) -> None:
    conn.execute(sa.update(t).where(t.c.seq.in_(list(seqs)), t.c.lease_owner == owner).values(lease_until=until))


def resolve(
    conn: sa.Connection,
    t: sa.Table,
    owner: str,
    finished: Sequence[int],
    changes: Sequence[Change],
    now: float,
    keep_finished: bool,
) -> None:
    """Apply a round's outcome: finished rows deleted (or kept as done), the others updated; lease released."""
    if finished:
        mine = sa.and_(t.c.seq.in_(list(finished)), t.c.lease_owner == owner)
        if keep_finished:
            conn.execute(
                sa.update(t).where(mine).values(state=DONE, finished_at=now, lease_owner=None, lease_until=None)
            )
        else:
            conn.execute(sa.delete(t).where(mine))
    if changes:
        stmt = (
            sa.update(t)
            .where(t.c.seq == sa.bindparam("b_seq"), t.c.lease_owner == owner)
            .values(
                state=sa.bindparam("b_state"),
                done_handlers=sa.bindparam("b_done"),
                failed_handlers=sa.bindparam("b_failed"),
                attempts=sa.bindparam("b_attempts"),
                first_failure_at=sa.bindparam("b_first_failure_at"),
                next_attempt_at=sa.bindparam("b_next_attempt_at"),
                last_error=sa.func.coalesce(sa.bindparam("b_last_error", type_=sa.Text), t.c.last_error),
                finished_at=sa.bindparam("b_finished_at"),
                lease_owner=None,
                lease_until=None,
            )
        )
        conn.execute(
            stmt,
            [
                {
                    "b_seq": c.seq,
                    "b_state": c.state,
                    "b_done": json.dumps(sorted(c.done)),
                    "b_failed": json.dumps(sorted(c.failed)) if c.failed else None,
                    "b_attempts": c.attempts,
                    "b_first_failure_at": c.first_failure_at,
                    "b_next_attempt_at": c.next_attempt_at,
                    "b_last_error": c.last_error,
                    "b_finished_at": c.finished_at,
                }
                for c in changes
            ],
        )


def delete_done(conn: sa.Connection, t: sa.Table, before: float, limit: int) -> int:
    """Delete up to ``limit`` rows kept as done that finished before ``before``; returns how many."""
    old = sa.select(t.c.seq).where(t.c.state == DONE, t.c.finished_at < before).limit(limit)
    return conn.execute(sa.delete(t).where(t.c.seq.in_(old.scalar_subquery()))).rowcount or 0


# -- dead letters -------------------------------------------------------------------------------------------------


def _dead(t: sa.Table, ids: Sequence[str] | None) -> sa.ColumnElement[bool]:
    where = t.c.state == DEAD
    if ids is not None:
        where = sa.and_(where, t.c.event_id.in_(list(ids)))
    return where


def list_dead(conn: sa.Connection, t: sa.Table, limit: int | None, payloads: bool = False) -> list[StoredRecord]:
    """Dead rows, oldest first; with ``limit`` the newest ``limit`` of them."""
    c = t.c
    query = (
        sa.select(c.seq, c.event_id, c.event_name, c.body, c.failed_handlers, c.last_error, c.attempts, c.finished_at)
        .where(c.state == DEAD)
        .order_by(c.seq.desc())
        .limit(limit)
    )
    records = []
    for seq, event_id, name, body, failed, reason, attempts, finished_at in conn.execute(query):
        handlers = ", ".join(json.loads(failed)) if failed else ""
        payload = StoredRecord.payload_of(body) if payloads else None
        records.append(
            StoredRecord(
                StoredRecord.DEAD_LETTERS,
                seq,
                event_id,
                handlers,
                name,
                len(body),
                attempts,
                reason or "",
                finished_at or 0.0,
                payload=payload,
            )
        )
    records.reverse()
    return records


def _oldest(
    conn: sa.Connection, t: sa.Table, where: sa.ColumnElement[bool], limit: int | None
) -> sa.ColumnElement[bool]:
    """``where``, or with ``limit`` the oldest ``limit`` rows matching it (picked first: MySQL cannot change a
    table it reads in a subquery; ``where`` again, in case one of them changed in between)."""
    if limit is None:
        return where
    seqs = [seq for (seq,) in conn.execute(sa.select(t.c.seq).where(where).order_by(t.c.seq).limit(limit))]
    return sa.and_(where, t.c.seq.in_(seqs))


def replay(conn: sa.Connection, t: sa.Table, ids: Sequence[str] | None, now: float, limit: int | None = None) -> int:
    """Make dead rows (the oldest ``limit`` of them, with a limit) pending again; handlers that already have the
    event are still skipped."""
    values = {
        "state": PENDING,
        "failed_handlers": None,
        "attempts": 0,
        "first_failure_at": None,
        "next_attempt_at": now,
        "finished_at": None,
        "lease_owner": None,
        "lease_until": None,
    }
    return conn.execute(sa.update(t).where(_oldest(conn, t, _dead(t, ids), limit)).values(values)).rowcount or 0


def purge(
    conn: sa.Connection, t: sa.Table, ids: Sequence[str] | None, pending: bool = False, limit: int | None = None
) -> int:
    where = _dead(t, ids)
    if pending:
        where = sa.or_(where, t.c.state == PENDING if ids is None else t.c.event_id.in_(list(ids)))
    return conn.execute(sa.delete(t).where(_oldest(conn, t, where, limit))).rowcount or 0


def counts(conn: sa.Connection, t: sa.Table) -> dict[str, int]:
    rows = conn.execute(sa.select(t.c.state, sa.func.count()).group_by(t.c.state))
    found = {state: int(n) for state, n in rows}
    return {state: found.get(state, 0) for state in (PENDING, DONE, DEAD)}


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    """An outbox event waiting for its due time (listed by the inspector and the command line, cancelled by id)."""

    id: str  # the event id (the caller's, with dispatch(..., event_id=...))
    event_name: str
    payload: Any
    due_at: float  # epoch seconds
    created_at: float  # epoch seconds of the dispatch call
    key: str | None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def _scheduled_event(row: Sequence[Any]) -> ScheduledEvent:
    event_id, name, body, due_at, created_at, key = row
    try:
        payload = json.loads(body)[1]
    except (ValueError, IndexError, TypeError):
        payload = body
    return ScheduledEvent(event_id, name, payload, due_at, created_at, key)


def list_scheduled(
    conn: sa.Connection, t: sa.Table, now: float, limit: int | None, event_name: str | None = None
) -> list[ScheduledEvent]:
    """Delayed events not due yet (of one event name, if given), soonest first."""
    c = t.c
    where = sa.and_(c.state == PENDING, c.due_at > now, c.attempts == 0)
    if event_name is not None:
        where = sa.and_(where, c.event_name == event_name)
    query = (
        sa.select(c.event_id, c.event_name, c.body, c.due_at, c.created_at, c.key)
        .where(where)
        .order_by(c.due_at, c.seq)
        .limit(limit)
    )
    return [_scheduled_event(row) for row in conn.execute(query)]


def list_pending(conn: sa.Connection, t: sa.Table, limit: int | None) -> list[tuple[Any, ...]]:
    c = t.c
    query = (
        sa.select(c.event_id, c.event_name, c.attempts, c.created_at, c.last_error, c.key)
        .where(c.state == PENDING)
        .order_by(c.seq)
        .limit(limit)
    )
    return [tuple(row) for row in conn.execute(query)]


__all__ = ["Change", "Record", "ScheduledEvent"]
