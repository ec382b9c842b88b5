"""``python -m fastapi_events spool``: what an operator sees and can do with a spool file."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fastapi_events.delivery._spool import SpoolDB
from fastapi_events.handlers.aws import SQSForwardHandler
from tests._servers import MotoServer, free_port
from tests._sqs import Queue

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastapi_events", "spool", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def spool_with_dead_letters(tmp_path: Path) -> str:
    """A spool left by a forwarder whose broker was down: 3 pending events and 2 dead letters."""
    path = str(tmp_path / "spool.db")
    endpoint = {
        "endpoint_url": f"http://127.0.0.1:{free_port()}",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }

    async def run() -> None:
        handler = SQSForwardHandler("orders", "us-east-1", spool_path=path, **endpoint)
        await handler.handle_many(
            [
                ("order.created", {"n": 1}),
                ("order.bad", {"x": object()}),
                ("order.created", {"n": 2}),
                ("order.huge", "x" * 300_000),
                ("order.created", {"n": 3}),
            ]
        )
        await handler.shutdown(0.1)

    asyncio.run(run())
    return path


def test_list_shows_pending_and_dead_letters_with_reasons(spool_with_dead_letters: str) -> None:
    result = cli("list", spool_with_dead_letters)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "pending: 3" in out
    assert "dead letters: 2" in out
    assert out.count("order.created") == 3
    assert "orders" in out
    assert "order.bad" in out
    assert "not JSON-encodable" in out
    assert "order.huge" in out
    assert "262144-byte limit" in out


def test_json_output_is_machine_readable(spool_with_dead_letters: str) -> None:
    listing = json.loads(cli("list", "--json", spool_with_dead_letters).stdout)
    assert [r["event_name"] for r in listing["pending"]] == ["order.created"] * 3
    assert {r["event_name"] for r in listing["dead_letters"]} == {"order.bad", "order.huge"}
    assert all(r["destination"] == "orders" for r in listing["pending"] + listing["dead_letters"])
    dead = json.loads(cli("dead-letters", "--json", spool_with_dead_letters).stdout)
    assert {r["event_name"]: r["replayable"] for r in dead} == {"order.bad": False, "order.huge": True}
    stats = json.loads(cli("stats", "--json", spool_with_dead_letters).stdout)
    assert stats["pending"] == 3
    assert stats["dead_letters"] == 2
    assert stats["destinations"]["orders"]["pending"] == 3


def test_replay_by_id_moves_a_dead_letter_back_to_pending(spool_with_dead_letters: str) -> None:
    dead = json.loads(cli("dead-letters", "--json", spool_with_dead_letters).stdout)
    huge = next(r["id"] for r in dead if r["event_name"] == "order.huge")
    bad = next(r["id"] for r in dead if r["event_name"] == "order.bad")
    result = cli("replay", spool_with_dead_letters, "--id", huge, "--id", bad)
    assert result.returncode == 0, result.stderr
    assert "replayed 1 dead letter(s)" in result.stdout
    assert f"skipped {bad}" in result.stdout  # never encoded: nothing to send
    db = SpoolDB(spool_with_dead_letters)
    try:
        assert [r.event_name for r in db.list_pending()] == ["order.created"] * 3 + ["order.huge"]
        assert [r.event_name for r in db.list_dead()] == ["order.bad"]
    finally:
        db.close()
    assert cli("replay", spool_with_dead_letters, "--id", "no-such-id").returncode == 1


def test_replay_all_then_a_forwarder_delivers_them(moto_server: MotoServer, tmp_path: Path) -> None:
    queue = Queue(dict(moto_server.client_kwargs))
    path = str(tmp_path / "spool.db")

    async def fail_then_deliver() -> None:
        # A dead letter the broker refused before (here: a stricter size limit of an earlier configuration).
        strict = SQSForwardHandler(queue.name, queue.region, spool_path=path, **queue.handler_kwargs)
        strict.transport.max_message_bytes = 100  # type: ignore[misc]
        await strict.handle_many([("late.event", {"text": "y" * 200})])
        await strict.shutdown(1)

    asyncio.run(fail_then_deliver())
    assert "late.event" in cli("dead-letters", path).stdout
    result = cli("replay", path, "--all")
    assert result.returncode == 0, result.stderr
    assert "replayed 1" in result.stdout

    async def deliver() -> None:
        handler = SQSForwardHandler(queue.name, queue.region, spool_path=path, **queue.handler_kwargs)
        await handler.startup()
        await asyncio.to_thread(queue.receive, 1, 15)
        await handler.shutdown(5)

    asyncio.run(deliver())
    assert [r.event_name for r in queue.received] == ["late.event"]
    assert json.loads(cli("stats", "--json", path).stdout)["dead_letters"] == 0


def test_purge_removes_dead_letters_and_optionally_pending(spool_with_dead_letters: str) -> None:
    result = cli("purge", spool_with_dead_letters)
    assert result.returncode == 0
    assert "purged 2" in result.stdout
    stats = json.loads(cli("stats", "--json", spool_with_dead_letters).stdout)
    assert (stats["pending"], stats["dead_letters"]) == (3, 0)
    assert "purged 3" in cli("purge", spool_with_dead_letters, "--pending").stdout
    assert json.loads(cli("stats", "--json", spool_with_dead_letters).stdout)["pending"] == 0


def test_missing_spool_file_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    result = cli("list", str(missing))
    assert result.returncode == 2
    assert "no spool file" in result.stderr
    assert not missing.exists()


def test_listing_commands_never_write_to_the_spool(spool_with_dead_letters: str) -> None:
    path = Path(spool_with_dead_letters)
    before = path.read_bytes()
    for verb in ("list", "dead-letters", "stats"):
        result = cli(verb, "--json", spool_with_dead_letters)
        assert result.returncode == 0, result.stderr
    assert path.read_bytes() == before
    path.chmod(0o400)  # an operator allowed to read the file, not to change it, can still look
    try:
        result = cli("dead-letters", "--json", spool_with_dead_letters)
        assert result.returncode == 0, result.stderr
        assert {r["event_name"] for r in json.loads(result.stdout)} == {"order.bad", "order.huge"}
    finally:
        path.chmod(0o600)
