"""``python -m fastapi_events relay DATABASE_URL --handlers module:attribute``: a standalone outbox relay.

Delivers the events apps committed to the outbox table (``SQLAlchemyOutbox``) to the given handlers - the same
list the apps' middleware gets - and keeps doing so until SIGTERM/SIGINT. Run as many as you like against one
PostgreSQL database: rows are claimed with ``FOR UPDATE SKIP LOCKED`` and a lease.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from ..errors import ConfigurationError
from . import help_text


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "relay", help="deliver the events in an outbox table", description=help_text(__doc__)
    )
    parser.add_argument("url", metavar="DATABASE_URL", help="SQLAlchemy URL, e.g. postgresql+asyncpg://app@db/app")
    parser.add_argument(
        "--handlers",
        action="append",
        required=True,
        metavar="MODULE:ATTRIBUTE",
        help="a handler or a list of handlers (repeatable)",
    )
    parser.add_argument("--table", default="fastapi_events_outbox", help="the outbox table name")
    parser.add_argument("--create-table", action="store_true", help="create the table when it is missing")
    parser.add_argument("--lease", type=float, default=30.0, help="seconds a claimed row is reserved (30)")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds between polls (2)")
    parser.add_argument("--batch-size", type=int, default=500, help="rows claimed at a time (500)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..consumer import load_object
    from ..outbox import SQLAlchemyOutbox, flatten_handlers, make_engine, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        handlers = flatten_handlers([load_object(reference) for reference in args.handlers])
        outbox = SQLAlchemyOutbox(
            make_engine(args.url),
            table_name=args.table,
            create_table=args.create_table,
            lease=args.lease,
            poll_interval=args.poll_interval,
            batch_size=args.batch_size,
        )
        asyncio.run(serve(outbox, handlers))
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


__all__ = ["register"]
