"""The outbox table: one row per committed event, with its per-handler progress, lease and retry state."""

from __future__ import annotations

import sqlalchemy as sa

PENDING = "pending"
DONE = "done"  # kept only with a retention period; deleted at once otherwise
DEAD = "dead"
DUE_AT = "due_at"  # added in 1.1 (delayed events); tables created by 1.0 get it on start-up

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
        # When a relay may claim the row: the due time of a delayed event, then the time of its next retry.
        sa.Column("next_attempt_at", sa.Float, nullable=False, default=0.0),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column(DUE_AT, sa.Float, nullable=True),  # epoch seconds a delayed event is due at; NULL: at once
        sa.Index(f"ix_{name}_state_seq", "state", "seq"),
        sa.Index(f"ix_{name}_key_seq", "key", "seq"),
        *(sa.Index(f"ix_{name}_{suffix}", *columns) for suffix, columns in _ADDED_INDEXES.items()),
    )


# Indexes added after 1.0 (tables of 1.0 get them too, see upgrade_statements). The relays' timer asks for the
# earliest future due time, and scheduled rows can be many.
_ADDED_INDEXES = {"state_next": ("state", "next_attempt_at")}


def upgrade_statements(conn: sa.Connection, table: sa.Table) -> list[str]:
    """The DDL that brings an existing outbox table (created by an older version) up to this version's shape.

    Only nullable columns are ever added, so rows written meanwhile by processes of the older version stay valid
    (and a relay of 1.0 never delivers a delayed row early: it claims by ``next_attempt_at`` too).
    """
    inspector = sa.inspect(conn)
    present = {column["name"] for column in inspector.get_columns(table.name, schema=table.schema)}
    missing = [column for column in table.c if column.name not in present]
    if not missing:
        return []
    preparer = conn.dialect.identifier_preparer
    name = preparer.format_table(table)
    # Two processes of the new version may start at once: on PostgreSQL the second one's DDL must not fail.
    maybe = " IF NOT EXISTS" if conn.dialect.name == "postgresql" else ""
    statements = [
        f"ALTER TABLE {name} ADD COLUMN{maybe} {preparer.format_column(column)} {column.type.compile(conn.dialect)}"
        for column in missing
    ]
    indexes = {index["name"] for index in inspector.get_indexes(table.name, schema=table.schema)}
    for suffix, columns in _ADDED_INDEXES.items():
        index = f"ix_{table.name}_{suffix}"
        if index not in indexes:
            quoted = ", ".join(preparer.quote(c) for c in columns)
            statements.append(f"CREATE INDEX IF NOT EXISTS {preparer.quote(index)} ON {name} ({quoted})")
    return statements


__all__ = ["DEAD", "DONE", "DUE_AT", "PENDING", "build_table", "channel_for", "upgrade_statements"]
