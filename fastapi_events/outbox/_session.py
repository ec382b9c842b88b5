"""Riding on the application's SQLAlchemy session: outbox rows are written in its transaction.

``dispatch(..., session=s)`` only appends to ``s.info`` (no I/O). The rows are inserted just before the session
commits (``before_commit``, so also when nothing else was flushed), and handed to the outbox for delivery right
after the commit succeeded (``after_commit``). A rollback, a failed commit or closing the session without commit
ends the transaction without ``after_commit``: the staged rows are forgotten with it.

The listeners are installed once, on the ``Session`` class, so that every session - including the
``sync_session`` behind an ``AsyncSession`` - is covered without per-session registration.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

_STAGED = "fastapi_events.outbox.staged"
_WRITTEN = "fastapi_events.outbox.written"

_installed = False
_install_lock = threading.Lock()


class Writer(Protocol):
    def write(self, session: Session, rows: list[dict[str, Any]]) -> None: ...

    def committed(self, rows: list[dict[str, Any]]) -> None: ...


def sync_session_of(session: Any) -> Session:
    sync = getattr(session, "sync_session", session)  # the user's session: an AsyncSession wraps a Session
    if not isinstance(sync, Session):
        raise TypeError(f"dispatch(session=...) needs a SQLAlchemy Session or AsyncSession, not {type(session)!r}")
    return sync


def stage(session: Any, writer: Writer, row: dict[str, Any]) -> None:
    if not _installed:
        _install()
    sync = sync_session_of(session)
    if not sync.in_transaction():
        # Begin now (no I/O: the connection is taken lazily) so that a rollback before any other statement
        # still ends a transaction and forgets this row.
        sync.begin()
    staged: list[tuple[Writer, dict[str, Any]]] | None = sync.info.get(_STAGED)
    if staged is None:
        staged = sync.info[_STAGED] = []
    staged.append((writer, row))


def _by_writer(staged: list[tuple[Writer, dict[str, Any]]]) -> dict[Writer, list[dict[str, Any]]]:
    grouped: dict[Writer, list[dict[str, Any]]] = {}
    for writer, row in staged:
        grouped.setdefault(writer, []).append(row)
    return grouped


def _before_commit(session: Session) -> None:
    staged = session.info.pop(_STAGED, None)
    if not staged:
        return
    for writer, rows in _by_writer(staged).items():
        writer.write(session, rows)
    session.info.setdefault(_WRITTEN, []).extend(staged)


def _after_commit(session: Session) -> None:
    written = session.info.pop(_WRITTEN, None)
    if not written:
        return
    for writer, rows in _by_writer(written).items():
        writer.committed(rows)


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction: whatever was not committed is gone
        session.info.pop(_STAGED, None)
        session.info.pop(_WRITTEN, None)


def _install() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        hooks: list[tuple[str, Callable[..., None]]] = [
            ("before_commit", _before_commit),
            ("after_commit", _after_commit),
            ("after_transaction_end", _after_transaction_end),
        ]
        for name, hook in hooks:
            event.listen(Session, name, hook)
        _installed = True


__all__ = ["stage", "sync_session_of"]
