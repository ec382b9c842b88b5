"""The command line with an outbox: ``relay`` delivers, ``spool`` verbs list, replay and purge dead letters, list
and cancel scheduled events."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from fastapi_events.cli import main
from fastapi_events.delivery import RetryPolicy
from tests._servers import wait_for
from tests.outbox._app import Recorder, count_rows, create_orders, make_app
from tests.outbox._delayed import Clock
from tests.outbox._delayed import make_app as make_delayed_app

ROOT = Path(__file__).resolve().parents[2]


def committed_but_undelivered(db: Path, orders: int) -> sa.Engine:
    """Orders and their events committed by an app that only writes (``relay=False``)."""
    engine = sa.create_engine(f"sqlite:///{db}")
    create_orders(engine)
    app, _ = make_app(engine, [Recorder()], relay=False)
    with TestClient(app) as client:
        for n in range(1, orders + 1):
            client.post(f"/orders/{n}")
    assert count_rows(engine) == orders
    return engine


def test_standalone_relay_delivers_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    engine = committed_but_undelivered(tmp_path / "app.db", 5)
    out = tmp_path / "events.jsonl"
    relay = subprocess.Popen(
        [
            *(sys.executable, "-m", "fastapi_events", "relay", f"sqlite:///{tmp_path / 'app.db'}"),
            *("--handlers", "tests.cli._relay_handlers:handlers", "--poll-interval", "0.1"),
        ],
        cwd=ROOT,
        env={**os.environ, "FE_OUT": str(out)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: count_rows(engine) == 0, timeout=30, message="the relay to deliver")
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted(line["payload"]["order_id"] for line in lines) == [1, 2, 3, 4, 5]
        assert {line["name"] for line in lines} == {"order.placed"}
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(20) == 0
    finally:
        relay.kill()
        relay.wait(10)


def test_relay_refuses_a_missing_table_unless_asked_to_create_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "fastapi_events", "relay", url, "--handlers", "tests.cli._relay_handlers:handlers"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "fastapi_events_outbox" in result.stderr
    assert "does not exist" in result.stderr


def test_outbox_dead_letters_with_the_spool_verbs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    create_orders(engine)
    broken = Recorder(failures=1000)
    retry = RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.02)
    app, _ = make_app(engine, [broken], retry=retry, poll_interval=0.05)
    with TestClient(app) as client:
        for n in range(1, 4):
            client.post(f"/orders/{n}")
        wait_for(lambda: count_rows(engine, where="WHERE state = 'dead'") == 3, timeout=20)
    url = f"sqlite:///{tmp_path / 'app.db'}"

    assert main(["spool", "dead-letters", url, "--json"]) == 0
    dead = json.loads(capsys.readouterr().out)
    assert len(dead) == 3
    assert {d["event_name"] for d in dead} == {"order.placed"}
    assert {d["destination"] for d in dead} == {repr(broken)}
    assert all("failing attempt 2" in d["reason"] and d["attempts"] == 2 for d in dead)

    assert main(["spool", "dead-letters", url]) == 0
    assert "dead letters: 3" in capsys.readouterr().out

    assert main(["spool", "replay", url, "--id", dead[0]["id"]]) == 0
    assert "replayed 1" in capsys.readouterr().out
    assert count_rows(engine, where="WHERE state = 'pending'") == 1

    assert main(["spool", "purge", url, "--id", dead[1]["id"]]) == 0
    assert "purged 1" in capsys.readouterr().out
    assert main(["spool", "stats", url, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["pending"], stats["dead_letters"]) == (1, 1)

    assert main(["spool", "list", f"sqlite:///{tmp_path / 'other.db'}"]) == 2
    assert "no database file" in capsys.readouterr().err
    assert not (tmp_path / "other.db").exists()  # looking never creates a database
    sqlite3.connect(tmp_path / "other.db").close()
    assert main(["spool", "list", f"sqlite:///{tmp_path / 'other.db'}"]) == 2
    assert "no outbox table" in capsys.readouterr().err


def test_scheduled_events_listed_and_cancelled_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    writer, _ = make_delayed_app(engine, [Clock()], relay=False)
    events = [
        {"name": "reservation.expire", "delay": 2.5, "id": "keep", "payload": {"n": 1}},
        {"name": "invoice.reminder", "delay": 2.0, "id": "drop", "payload": {"n": 2}},
    ]
    with TestClient(writer) as client:
        assert client.post("/schedule", json={"events": events}).status_code == 200
    url = f"sqlite:///{tmp_path / 'app.db'}"

    assert main(["spool", "scheduled", url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(e["id"], e["event_name"], e["payload"]["n"]) for e in listed] == [
        ("drop", "invoice.reminder", 2),  # soonest first
        ("keep", "reservation.expire", 1),
    ]
    assert all(e["due_at"] > e["created_at"] for e in listed)
    assert main(["spool", "scheduled", url]) == 0
    text = capsys.readouterr().out
    assert "scheduled: 2" in text
    assert "invoice.reminder" in text

    assert main(["spool", "scheduled", url, "--event", "invoice.reminder", "--json"]) == 0
    assert [e["id"] for e in json.loads(capsys.readouterr().out)] == ["drop"]
    assert main(["spool", "scheduled", url, "--event", "invoice.*", "--json"]) == 0  # a name, not a pattern
    assert json.loads(capsys.readouterr().out) == []

    # What can be no event id is refused before the database is touched, saying why; nothing is cancelled.
    for odd in ("", "x" * 65, "drop\udcff"):  # the last: an argv byte that is not UTF-8
        assert main(["spool", "cancel", url, "--id", "drop", "--id", odd]) == 2
        assert "bad --id: event_id must be a non-empty string of at most 64 characters" in capsys.readouterr().err
    assert main(["spool", "cancel", url, "--id", "drop", "--id", "drop"]) == 0  # twice: one event
    assert "cancelled 1" in capsys.readouterr().out
    assert main(["spool", "cancel", url, "--id", "drop", "--json"]) == 1  # gone already: says so
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"cancelled": 0}
    assert "not found" in captured.err
    assert main(["spool", "scheduled", str(tmp_path / "spool.db")]) == 2
    assert "give its database URL" in capsys.readouterr().err

    clock = Clock()
    app, _ = make_delayed_app(engine, [clock], poll_interval=60)
    with TestClient(app):
        wait_for(lambda: len(clock.handled) == 1, timeout=30, message="the event not cancelled")
        time.sleep(0.5)
    assert clock.ids() == ["keep"]
    assert count_rows(engine) == 0
    engine.dispose()
