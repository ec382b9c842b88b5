"""``python -m fastapi_events ... --help`` speaks to users: what to run, which URLs, no notes for contributors."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _help(*command: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "fastapi_events", *command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("command", [(), ("consume",), ("spool",), ("relay",)])
def test_help_has_no_source_markup_or_contributor_notes(command: tuple[str, ...]) -> None:
    text = _help(*command)
    assert "``" not in text
    assert "register(" not in text
    assert "subparsers" not in text
    assert "namespace" not in text


def test_top_level_help_names_every_command() -> None:
    text = _help()
    for command in ("consume", "relay", "spool"):
        assert command in text


def test_consume_help_lists_a_url_form_for_every_broker_package() -> None:
    text = _help("consume")
    for form in (
        "kafka://HOST:PORT/TOPIC",
        "redis://HOST:PORT/DB/STREAM",
        "sqs://QUEUE",
        "pubsub://PROJECT/SUBSCRIPTION",
    ):
        assert form in text
