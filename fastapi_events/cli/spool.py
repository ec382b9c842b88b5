"""``python -m fastapi_events spool ...``: inspect a forwarder's spool file, replay or purge dead letters.

Given a database URL (``postgresql+psycopg://...``, ``sqlite:///app.db``) instead of a file, the same verbs work on
the dead letters of a transactional outbox table (``--table``, default ``fastapi_events_outbox``); a replayed
outbox event goes to the handlers that gave up on it, through any relay.

``scheduled`` lists an outbox's delayed events that are not due yet (``--event NAME``: of one name), ``cancel --id ID``
cancels undelivered ones.

``replay`` moves dead letters back to the pending table; it does not talk to any broker. A running forwarder
using the file picks them up within its relay interval (1 s by default), otherwise the next process started
with the same ``spool_path`` delivers them. This keeps broker credentials and settings in one place - the app
- and lets ``replay`` run safely while the app is up (SQLite WAL: the app keeps writing meanwhile).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._schedule import check_event_id
from ..delivery import SpoolDB, StoreAdmin, StoredRecord
from . import help_text

if TYPE_CHECKING:  # needs SQLAlchemy, an optional dependency
    from ..outbox import OutboxAdmin


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "spool", help="inspect and repair a forwarder's spool file", description=help_text(__doc__)
    )
    commands = parser.add_subparsers(dest="spool_command", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(name, help=help_, description=help_)
        sub.add_argument("path", metavar="PATH", help="the spool file (the forwarder's spool_path) or an outbox's URL")
        sub.add_argument("--table", default="fastapi_events_outbox", help="the outbox table (with a database URL)")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.add_argument("--destination", help="only this destination (queue URL/name, topic path...)")
        return sub

    add("list", "list pending events and dead letters").set_defaults(func=_list)
    add("dead-letters", "list dead letters with their reason").set_defaults(func=_dead_letters)
    replay = add("replay", "move dead letters back to pending; the forwarder delivers them")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", action="append", dest="ids", metavar="ID", help="event id (repeatable)")
    which.add_argument("--all", action="store_true", help="every replayable dead letter")
    replay.set_defaults(func=_replay)
    purge = add("purge", "delete dead letters (all, or --id ...); with --pending also undelivered events")
    purge.add_argument("--id", action="append", dest="ids", metavar="ID", help="event id (repeatable)")
    purge.add_argument("--pending", action="store_true", help="also delete pending (never delivered!) events")
    purge.set_defaults(func=_purge)
    add("stats", "counts per destination").set_defaults(func=_stats)
    scheduled = add("scheduled", "list an outbox's delayed events not due yet, soonest first")
    scheduled.add_argument("--event", metavar="NAME", help="only the events of this name")
    scheduled.set_defaults(func=_scheduled)
    cancel = add("cancel", "cancel an outbox's undelivered (delayed) events by id")
    cancel.add_argument("--id", action="append", dest="ids", metavar="ID", required=True, help="event id (repeatable)")
    cancel.set_defaults(func=_cancel)


def _open(args: argparse.Namespace, *, write: bool = False) -> StoreAdmin | None:
    """Readers get a read-only connection; writers wait for the app's writer through SQLite's locking."""
    if "://" in args.path:
        from ..outbox import OutboxAdmin

        try:
            return OutboxAdmin(args.path, args.table)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return None
    try:
        return SpoolDB(args.path, create=False, readonly=not write)
    except FileNotFoundError:
        print(f"error: no spool file at {args.path}", file=sys.stderr)
        return None


def _open_outbox(args: argparse.Namespace) -> OutboxAdmin | None:
    if "://" not in args.path:
        print("error: delayed events live in a transactional outbox: give its database URL", file=sys.stderr)
        return None
    from ..outbox import OutboxAdmin

    db = _open(args, write=True)
    assert db is None or isinstance(db, OutboxAdmin)
    return db


def _scheduled(args: argparse.Namespace) -> int:
    db = _open_outbox(args)
    if db is None:
        return 2
    try:
        events = db.list_scheduled(args.event)
    finally:
        db.close()
    if args.json:
        json.dump([event.as_dict() for event in events], sys.stdout)
        print()
        return 0
    print(f"scheduled: {len(events)}")
    rows = [(e.id, e.event_name, _when(e.due_at), _when(e.created_at), json.dumps(e.payload)[:60]) for e in events]
    if rows:
        _print_table(("ID", "EVENT", "DUE (UTC)", "DISPATCHED (UTC)", "PAYLOAD"), rows)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    for event_id in args.ids:
        try:
            check_event_id(event_id)
        except ValueError as exc:
            print(f"error: bad --id: {exc}", file=sys.stderr)
            return 2
    db = _open_outbox(args)
    if db is None:
        return 2
    try:
        cancelled = db.cancel(args.ids)
    finally:
        db.close()
    if args.json:
        json.dump({"cancelled": cancelled}, sys.stdout)
        print()
    else:
        print(f"cancelled {cancelled} event(s) in {args.path}")
    if cancelled < len(set(args.ids)):
        print("warning: some ids were not found among the undelivered events", file=sys.stderr)
        return 1
    return 0


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _print_records(title: str, records: Sequence[StoredRecord], reason_header: str) -> None:
    print(f"{title}: {len(records)}")
    if not records:
        return
    rows = [(r.id, r.event_name, r.destination, str(r.attempts), _when(r.created_at), r.reason or "-") for r in records]
    _print_table(("ID", "EVENT", "DESTINATION", "ATTEMPTS", "TIME (UTC)", reason_header), rows)


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns aligned; the last one (free text) is not padded."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers[:-1])]
    for row in [headers, *rows]:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])


def _list(args: argparse.Namespace) -> int:
    db = _open(args)
    if db is None:
        return 2
    try:
        pending, dead = db.list_pending(args.destination), db.list_dead(args.destination)
    finally:
        db.close()
    if args.json:
        json.dump(
            {"pending": [r.as_dict() for r in pending], "dead_letters": [r.as_dict() for r in dead]},
            sys.stdout,
        )
        print()
        return 0
    _print_records("pending", pending, "LAST ERROR")
    _print_records("dead letters", dead, "REASON")
    return 0


def _dead_letters(args: argparse.Namespace) -> int:
    db = _open(args)
    if db is None:
        return 2
    try:
        dead = db.list_dead(args.destination)
    finally:
        db.close()
    if args.json:
        json.dump([r.as_dict() for r in dead], sys.stdout)
        print()
    else:
        _print_records("dead letters", dead, "REASON")
    return 0


def _replay(args: argparse.Namespace) -> int:
    db = _open(args, write=True)
    if db is None:
        return 2
    try:
        moved, skipped = db.replay(None if args.all else args.ids, args.destination)
    finally:
        db.close()
    if args.json:
        json.dump({"replayed": moved, "skipped": [r.as_dict() for r in skipped]}, sys.stdout)
        print()
    else:
        print(f"replayed {moved} dead letter(s) into pending; a forwarder using {args.path} delivers them")
        for r in skipped:
            print(f"skipped {r.id} ({r.event_name}): not replayable, it was never encoded: {r.reason}")
    if args.ids and moved + len(skipped) < len(args.ids):
        print("warning: some ids were not found among the dead letters", file=sys.stderr)
        return 1
    return 0


def _purge(args: argparse.Namespace) -> int:
    db = _open(args, write=True)
    if db is None:
        return 2
    try:
        removed = db.purge(args.ids, args.destination, pending=args.pending)
    finally:
        db.close()
    if args.json:
        json.dump({"purged": removed}, sys.stdout)
        print()
    else:
        print(f"purged {removed} event(s) from {args.path}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    db = _open(args)
    if db is None:
        return 2
    try:
        stats = db.stats()
    finally:
        db.close()
    if args.destination is not None:
        stats["destinations"] = {k: v for k, v in stats["destinations"].items() if k == args.destination}
    if args.json:
        json.dump(stats, sys.stdout)
        print()
        return 0
    if "://" in args.path:
        print(f"{stats['path']} table {stats['table']}: {stats['done']} finished row(s) kept")
    else:
        print(f"{stats['path']}: {stats['bytes']} bytes, mode {oct(os.stat(args.path).st_mode & 0o777)}")
    print(f"pending: {stats['pending']}  dead letters: {stats['dead_letters']}")
    for dest, item in sorted(stats["destinations"].items()):
        oldest = _when(item["oldest_pending_at"])
        print(f"  {dest}: pending {item['pending']} (oldest {oldest}), dead letters {item['dead_letters']}")
    return 0


__all__ = ["register"]
