"""``python -m fastapi_events consume URL --handlers module:attribute``: run the functions registered on your
``LocalHandler`` for the events a broker holds, in a worker process of their own. A message is acknowledged once
every handler succeeded; failures are retried, then dead-lettered."""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

from ..delivery import RetryPolicy
from ..errors import ConfigurationError
from . import help_text

_AFTER_URLS = """\
SIGTERM/SIGINT: running handlers finish, their messages are acknowledged, exit 0 (a second signal cancels them).
"""


def _epilog() -> str:
    from ..brokers import usage

    return "URL forms:\n" + "".join(f"  {line}\n" for line in usage()) + _AFTER_URLS


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "consume",
        help="run LocalHandler registrations for events read from a broker",
        description=help_text(__doc__),
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", help="where to read events from (see below)")
    parser.add_argument(
        "--handlers",
        action="append",
        required=True,
        metavar="MODULE:ATTRIBUTE",
        help="a LocalHandler to run, e.g. myapp.events:local_handler (repeatable)",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="handlers running at once (default 16)")
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=5,
        help="attempts before a failing event is dead-lettered (default 5)",
    )
    parser.add_argument("--retry-delay", type=float, default=0.5, help="first retry delay in seconds (default 0.5)")
    parser.add_argument("--max-retry-delay", type=float, default=30.0, help="longest retry delay (default 30)")
    parser.add_argument(
        "--handler-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="an attempt whose handlers still run after this long counts as failed: coroutine handlers are "
        "cancelled, the message is retried or dead-lettered (default: no limit)",
    )
    parser.add_argument(
        "--ignore-unknown",
        action="store_true",
        help="acknowledge events no handler is registered for, instead of dead-lettering them",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="seconds to let running handlers finish (default 30)",
    )
    parser.add_argument(
        "--deserializer",
        metavar="MODULE:ATTRIBUTE",
        help="deserializer(body, attributes) -> (event_name, payload), for bodies written by a custom serializer",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.set_defaults(func=run)


def _exit_before_consuming(signum: int, frame: object) -> None:
    # Nothing was received yet, so there is nothing to finish: a stop during start-up is a clean exit.
    raise SystemExit(0)


def run(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _exit_before_consuming)
    from ..consumer import load_deserializer, load_handlers, run_consumer, source_from_url

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
    )
    try:
        if args.concurrency < 1:
            raise ConfigurationError("--concurrency must be >= 1")
        if args.handler_timeout is not None and not args.handler_timeout > 0:
            raise ConfigurationError("--handler-timeout must be > 0 seconds")
        handler = load_handlers(args.handlers)
        deserializer = load_deserializer(args.deserializer) if args.deserializer else None
        source = source_from_url(args.url)
        retry = RetryPolicy(
            max_attempts=args.max_attempts, initial_delay=args.retry_delay, max_delay=args.max_retry_delay
        )
    except (ConfigurationError, ImportError) as exc:  # ImportError: the broker's extra is not installed
        logging.getLogger("fastapi_events.consumer").error("%s", exc)
        return 2
    return run_consumer(
        source,
        handler,
        concurrency=args.concurrency,
        retry=retry,
        ignore_unknown=args.ignore_unknown,
        shutdown_timeout=args.shutdown_timeout,
        deserializer=deserializer,
        handler_timeout=args.handler_timeout,
    )


__all__ = ["register", "run"]
