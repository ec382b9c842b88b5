"""``python -m fastapi_events``: the package's command-line tools.

Each sub-command lives in its own module exposing ``register(subparsers)``; the module's parser sets ``func`` to a
callable taking the parsed namespace and returning the exit code. Help texts come from :data:`DESCRIPTION` and the
sub-commands' docstrings, rendered for a terminal by :func:`help_text`.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence

_COMMANDS = ("spool", "consume", "relay")

DESCRIPTION = """\
Tools for apps that use fastapi-events: run your handlers on events read from a broker (consume), deliver
what apps wrote to a transactional outbox table (relay), and inspect, replay or purge what a forwarder kept in
its spool file (spool). "python -m fastapi_events COMMAND --help" describes a command."""

_LEADING_COMMAND = re.compile(r"^``python -m fastapi_events [^`]*``:\s*")


def help_text(doc: str | None) -> str:
    """A command module's docstring as help for users: without the leading command line and the ``...`` markup."""
    return _LEADING_COMMAND.sub("", doc or "").replace("``", '"')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fastapi_events", description=DESCRIPTION)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
