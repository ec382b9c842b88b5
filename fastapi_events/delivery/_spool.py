"""The durable spool file: an embedded SQLite database (stdlib ``sqlite3``) in WAL mode.

Two tables keyed by destination: ``pending`` (accepted, not yet acknowledged by the broker) and
``dead_letters``. This module is the synchronous SQL layer; forwarders reach it only through the single writer
thread of :mod:`fastapi_events.delivery._spool_writer`, the command line uses it directly.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ..errors import ConfigurationError
from ._records import ADMIN_BATCH, DEAD_LETTERS, PENDING, StoredRecord, id_chunks, in_batches, payload_of
from ._spool_file import BUSY_TIMEOUT, connect
from ._store import DeadLetter, Entry, Retry
from ._transport import OutboundMessage

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    destination TEXT NOT NULL,
    event_name TEXT NOT NULL,
    body BLOB NOT NULL,
    attributes TEXT NOT NULL,
    key TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_failure_at REAL,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_due ON pending (destination, next_attempt_at);
CREATE INDEX IF NOT EXISTS pending_order ON pending (destination, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    destination TEXT NOT NULL,
    event_name TEXT NOT NULL,
    body BLOB NOT NULL,
    attributes TEXT NOT NULL,
    key TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL,
    replayable INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    dead_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_id ON dead_letters (id);
"""

_COLUMNS = "seq, id, destination, event_name, body, attributes, key, attempts, first_failure_at, last_error"


#: The former name of :class:`~fastapi_events.delivery.StoredRecord`.
SpoolRecord = StoredRecord


class SpoolDB:
    """One connection to a spool file. Not thread-safe: use it from a single thread.

    Three ways to open one, by what the caller does with the file:

    - the forwarder's writer (``lock=True``): creates the file (mode 0600) and its schema, and takes an exclusive
      ``flock`` on ``<path>.lock`` so that two processes never send the same pending rows; the kernel releases it
      when the process dies, even by ``kill -9``;
    - readers (``readonly=True``: the inspector's listing, ``spool list|dead-letters|stats``): a read-only
      connection that never writes, not even the schema;
    - other writers (the default with ``create=False``: ``spool replay|purge``, the inspector's replay): an
      existing file, changed through SQLite's own locking; they wait for the app's writer (busy timeout).

    The file is only ever opened through SQLite, except once to create it: see :mod:`._spool_file`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lock: bool = False,
        create: bool = True,
        readonly: bool = False,
        timeout: float = BUSY_TIMEOUT,
    ) -> None:
        self.path = os.fspath(path)
        self.readonly = readonly
        self._lock_fd: int | None = None
        create = create and not readonly
        if create:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o700, exist_ok=True)
        if lock:
            self._take_lock()
        try:
            self.conn = connect(self.path, create=create, readonly=readonly, timeout=timeout)
            version = self._version()
            if version > SCHEMA_VERSION:
                raise ConfigurationError(f"spool {self.path} has schema {version}, newer than this version supports")
            if create:
                # Persistent, so set once by whoever creates the file; a reader never changes the journal mode.
                self.conn.execute("PRAGMA journal_mode=WAL")
            if not readonly:
                # NORMAL in WAL mode: a commit survives the process being killed (kill -9), only an OS crash or
                # power loss can lose the last transactions - and it saves an fsync per commit.
                self.conn.execute("PRAGMA synchronous=NORMAL")
                if version < SCHEMA_VERSION:
                    self._create_schema()
        except BaseException:
            self.close()
            raise

    def _version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _create_schema(self) -> None:
        with self.transaction():
            if self._version() < SCHEMA_VERSION:  # another process may have created it meanwhile
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @property
    def _has_schema(self) -> bool:
        # A reader may open a file its creator has not given a schema yet: it is empty, not an error.
        return self._version() >= 1

    def _take_lock(self) -> None:
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigurationError(
                f"spool {self.path} is in use by another process; every process (e.g. each server worker) "
                "needs its own spool_path"
            ) from None
        self._lock_fd = fd

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- transactions (the writer thread groups several operations into one) --------------------------------
    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("ROLLBACK")

    @contextlib.contextmanager
    def transaction(self) -> Any:
        self.begin()
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self.commit()

    # -- forwarder operations ------------------------------------------------------------------------------
    def insert_pending(self, destination: str, messages: Sequence[OutboundMessage], now: float) -> list[int]:
        if not messages:
            return []
        self.conn.executemany(
            "INSERT INTO pending (id, destination, event_name, body, attributes, key, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(m.id, destination, m.event_name, m.body, _dump(m.attributes), m.key, now) for m in messages],
        )
        # Only this connection writes, inside the transaction the caller holds: the rows got consecutive seqs.
        last = int(self.conn.execute("SELECT last_insert_rowid()").fetchone()[0])
        return list(range(last - len(messages) + 1, last + 1))

    def due(self, destination: str, now: float, limit: int) -> tuple[list[Entry], float | None]:
        # "+next_attempt_at" keeps that column out of index selection: walking pending_order in seq order stops
        # after `limit` due rows, where the pending_due index would sort every due row of a large backlog.
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM pending WHERE destination = ? AND +next_attempt_at <= ? ORDER BY seq LIMIT ?",
            (destination, now, limit),
        ).fetchall()
        entries = [_entry(row) for row in rows]
        (next_at,) = self.conn.execute(
            "SELECT MIN(next_attempt_at) FROM pending WHERE destination = ? AND next_attempt_at > ?",
            (destination, now),
        ).fetchone()
        if len(rows) == limit:
            next_at = now
        return entries, next_at

    def resolve(
        self,
        destination: str,
        delivered: Sequence[Entry],
        retries: Sequence[Retry],
        dead: Sequence[tuple[Entry, DeadLetter]],
        now: float,
    ) -> None:
        if delivered:
            self._delete([e.seq for e in delivered])
        if retries:
            self.conn.executemany(
                "UPDATE pending SET attempts = ?, first_failure_at = ?, next_attempt_at = ?, last_error = ? "
                "WHERE seq = ?",
                [
                    (
                        r.entry.attempts,
                        r.entry.first_failure_at,
                        r.next_attempt_at,
                        r.entry.last_error,
                        r.entry.seq,
                    )
                    for r in retries
                ],
            )
        if dead:
            self.insert_dead(destination, [d for _, d in dead], now)
            self._delete([e.seq for e, _ in dead])

    def _delete(self, seqs: Sequence[int]) -> None:
        # Chunks of at most 500 host parameters (SQLite's limit is 999 on old builds).
        for start in range(0, len(seqs), 500):
            chunk = seqs[start : start + 500]
            self.conn.execute(f"DELETE FROM pending WHERE seq IN ({','.join('?' * len(chunk))})", chunk)

    def insert_dead(self, destination: str, dead: Iterable[DeadLetter], now: float) -> None:
        self.conn.executemany(
            "INSERT INTO dead_letters (id, destination, event_name, body, attributes, key, attempts, reason, "
            "replayable, created_at, dead_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    d.message.id,
                    destination,
                    d.message.event_name,
                    d.message.body,
                    _dump(d.message.attributes),
                    d.message.key,
                    d.attempts,
                    d.reason,
                    int(d.replayable),
                    now,
                    now,
                )
                for d in dead
            ],
        )

    def count_pending(self, destination: str | None = None) -> int:
        return self._count("pending", destination)

    def _count(self, table: str, destination: str | None) -> int:
        # ``table`` is one of this module's two table names, never user input.
        if not self._has_schema:
            return 0
        if destination is None:
            return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        sql = f"SELECT COUNT(*) FROM {table} WHERE destination = ?"
        return int(self.conn.execute(sql, (destination,)).fetchone()[0])

    # -- administration (StoreAdmin: the command line, the inspector) ------------------------------------------
    def list_pending(self, destination: str | None = None) -> list[StoredRecord]:
        if not self._has_schema:
            return []
        sql = (
            "SELECT seq, id, destination, event_name, length(body), attempts, last_error, created_at "
            "FROM pending" + (" WHERE destination = ?" if destination else "") + " ORDER BY seq"
        )
        rows = self.conn.execute(sql, (destination,) if destination else ()).fetchall()
        return [StoredRecord(PENDING, *row) for row in rows]

    def list_dead(
        self, destination: str | None = None, *, limit: int | None = None, payloads: bool = False
    ) -> list[StoredRecord]:
        if not self._has_schema:
            return []
        body = "body" if payloads else "NULL"
        sql = (
            "SELECT seq, id, destination, event_name, length(body), attempts, reason, dead_at, replayable, "
            f"{body} FROM dead_letters" + (" WHERE destination = ?" if destination else "") + " ORDER BY seq DESC"
        )
        params: tuple[Any, ...] = (destination,) if destination else ()
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)
        records = []
        for seq, id_, dest, name, size, attempts, reason, dead_at, replayable, raw in self.conn.execute(sql, params):
            payload = None if raw is None else payload_of(bytes(raw))
            records.append(
                StoredRecord(
                    DEAD_LETTERS, seq, id_, dest, name, size, attempts, reason, dead_at, bool(replayable), payload
                )
            )
        records.reverse()
        return records

    def count_dead(self, destination: str | None = None) -> int:
        return self._count("dead_letters", destination)

    def replay(self, ids: Sequence[str] | None, destination: str | None = None) -> tuple[int, list[StoredRecord]]:
        """Move dead letters (all, or those whose event id is in ``ids``) back to pending, oldest first.

        Returns ``(moved, skipped)``; dead letters without a wire body (encoding failures) are skipped. Runs in
        transactions of at most ``ADMIN_BATCH`` rows with a pause between them (see ``in_batches``).
        """
        skipped = [r for r in self.list_dead(destination) if not r.replayable and (ids is None or r.id in ids)]
        moved = 0
        for where, params in _dead_filters(ids, destination):

            def move(where: str = where, params: tuple[Any, ...] = params) -> int:
                seqs = [
                    seq
                    for (seq,) in self.conn.execute(
                        f"SELECT seq FROM dead_letters WHERE replayable = 1{where} ORDER BY seq LIMIT ?",
                        (*params, ADMIN_BATCH),
                    )
                ]
                if seqs:
                    marks = ",".join("?" * len(seqs))
                    self.conn.execute(
                        "INSERT INTO pending (id, destination, event_name, body, attributes, key, created_at) "
                        "SELECT id, destination, event_name, body, attributes, key, ? FROM dead_letters "
                        f"WHERE seq IN ({marks}) ORDER BY seq",
                        (time.time(), *seqs),
                    )
                    self.conn.execute(f"DELETE FROM dead_letters WHERE seq IN ({marks})", seqs)
                return len(seqs)

            moved += self._batches(move)
        return moved, skipped

    def purge(self, ids: Sequence[str] | None, destination: str | None = None, *, pending: bool = False) -> int:
        """Delete dead letters (all, or by event id) and, with ``pending=True``, pending events too; in
        transactions of at most ``ADMIN_BATCH`` rows, as :meth:`replay`."""
        removed = 0
        for where, params in _dead_filters(ids, destination):
            for table in (DEAD_LETTERS, PENDING) if pending else (DEAD_LETTERS,):
                # ``table`` is one of this module's two table names, never user input.
                sql = f"DELETE FROM {table} WHERE seq IN (SELECT seq FROM {table} WHERE 1 = 1{where} LIMIT ?)"

                def delete(sql: str = sql, params: tuple[Any, ...] = params) -> int:
                    return int(self.conn.execute(sql, (*params, ADMIN_BATCH)).rowcount)

                removed += self._batches(delete)
        return removed

    def _batches(self, step: Callable[[], int]) -> int:
        """``step`` (changing at most ``ADMIN_BATCH`` rows) in transactions of its own until it changes fewer."""

        def transaction() -> int:
            with self.transaction():
                return step()

        return in_batches(transaction)

    def stats(self) -> dict[str, Any]:
        by_destination: dict[str, dict[str, Any]] = {}
        for table in (PENDING, DEAD_LETTERS) if self._has_schema else ():
            for dest, count, oldest in self.conn.execute(
                f"SELECT destination, COUNT(*), MIN(created_at) FROM {table} GROUP BY destination"
            ):
                item = by_destination.setdefault(dest, {"pending": 0, "dead_letters": 0, "oldest_pending_at": None})
                item[table] = count
                if table == "pending":
                    item["oldest_pending_at"] = oldest
        size = sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))
        return {
            "path": self.path,
            "bytes": size,
            "pending": sum(d["pending"] for d in by_destination.values()),
            "dead_letters": sum(d["dead_letters"] for d in by_destination.values()),
            "destinations": by_destination,
        }


def _dead_filters(ids: Sequence[str] | None, destination: str | None) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """``(where, params)`` selecting the rows of ``ids`` (all when None) of ``destination`` (any when None): one
    per ``ADMIN_BATCH`` ids, so that a long list of ids stays within SQLite's host parameter limit."""
    of_destination = "" if destination is None else " AND destination = ?"
    named: tuple[Any, ...] = () if destination is None else (destination,)
    for chunk in id_chunks(ids):
        if chunk is None:
            yield of_destination, named
        else:
            yield f" AND id IN ({', '.join('?' * len(chunk))}){of_destination}", (*chunk, *named)


def _dump(attributes: dict[str, str]) -> str:
    return json.dumps(attributes, separators=(",", ":"))


def _entry(row: tuple[Any, ...]) -> Entry:
    seq, id_, _destination, name, body, attributes, key, attempts, first_failure_at, last_error = row
    message = OutboundMessage(id_, name, bytes(body), json.loads(attributes), key)
    return Entry(seq, message, attempts, first_failure_at, last_error)


__all__ = ["BUSY_TIMEOUT", "SCHEMA_VERSION", "SpoolDB", "SpoolRecord"]
