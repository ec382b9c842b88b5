"""The outbox table: one row per committed event, with its per-handler progress, lease and retry state."""

from __future__ import annotations

import sqlalchemy as sa

PENDING = "pending"
DONE = "done"  # kept only with a retention period; deleted at once otherwise
DEAD = "dead"

# SQLite only auto-increments an INTEGER PRIMARY KEY, and 32 bits of sequence are too few for PostgreSQL.
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def channel_for(table_name: str) -> str:
    """The PostgreSQL NOTIFY channel of an outbox table (channel names are identifiers: at most 63 bytes)."""
    return f"fastapi_events_outbox_{table_name}"[:63]


def build_table(name: str, metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        # Insert order: the order relays hand events over in, and (per key) the order handlers see them in.
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("event_name", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),  # the wire body: JSON ["event name", payload]
        sa.Column("headers", sa.Text, nullable=True),  # JSON object: trace context propagated from dispatch
        sa.Column("key", sa.String(255), nullable=True),  # ordering key (SQLAlchemyOutbox(key=...))
        sa.Column("created_at", sa.Float, nullable=False),  # epoch seconds at dispatch
        sa.Column("state", sa.String(8), nullable=False, default=PENDING),
        sa.Column("done_handlers", sa.Text, nullable=False, default="[]"),  # JSON list: handlers that have it
        sa.Column("failed_handlers", sa.Text, nullable=True),  # JSON list: handlers that dead-lettered it
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("first_failure_at", sa.Float, nullable=True),
        sa.Column("next_attempt_at", sa.Float, nullable=False, default=0.0),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Index(f"ix_{name}_state_seq", "state", "seq"),
        sa.Index(f"ix_{name}_key_seq", "key", "seq"),
    )


__all__ = ["DEAD", "DONE", "PENDING", "build_table", "channel_for"]
