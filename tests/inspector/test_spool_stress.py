"""The spool under an open inspector page and an operator at the command line, at once.

A forwarder whose broker cannot be reached keeps writing its spool; the inspector lists the spool's dead letters
in the app's own process (as an open page polls it); another process lists, counts and replays dead letters with
``python -m fastapi_events spool``. Nothing may corrupt the file, fail a write or lose an event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastapi_events.brokers.redis import RedisStreamForwardHandler
from fastapi_events.delivery._spool import SpoolDB
from fastapi_events.delivery._store import DeadLetter
from fastapi_events.delivery._transport import OutboundMessage

from .._servers import free_port
from ._app import make_app
from .conftest import ClientFactory

# Needs the redis extra (the forwarder's client), not a server: the broker is unreachable on purpose.
pytestmark = [pytest.mark.anyio, pytest.mark.servers]

SECONDS = 16.0
SEEDED = 400  # dead letters left by an earlier run, for the operator to replay
ROOT = Path(__file__).resolve().parents[2]


def seed(path: str, destination: str) -> list[str]:
    db = SpoolDB(path)
    ids = [f"seeded-{i}" for i in range(SEEDED)]
    body = b'["old.event",{}]'
    dead = [DeadLetter(OutboundMessage(i, "old.event", body, {}, None), "broker said no", 3) for i in ids]
    with db.transaction():
        db.insert_dead(destination, dead, time.time())
    db.close()
    return ids


async def test_spool_survives_the_inspector_and_the_command_line_beside_a_live_app(
    client_for: ClientFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "spool.db")
    forwarder = RedisStreamForwardHandler(
        "orders", f"redis://127.0.0.1:{free_port()}/0", spool_path=path, relay_interval=0.2
    )
    destination = str(forwarder.transport.destination)
    seeded = seed(path, destination)
    app = make_app(forwarder=forwarder)
    caplog.set_level(logging.ERROR, logger="fastapi_events")
    operator = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.inspector._spool_operator", path, str(SECONDS),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    sent = 0
    polls: list[str | None] = []
    async with client_for(app) as client:

        async def poll_dead_letters() -> None:
            while True:
                response = await client.get("/_events/api/dead-letters")
                assert response.status_code == 200, response.text
                polls.append(response.json()["sources"][0]["error"])
                await asyncio.sleep(0.02)

        poller = asyncio.get_running_loop().create_task(poll_dead_letters())
        deadline = time.monotonic() + SECONDS
        try:
            while time.monotonic() < deadline:  # 20 events every 20 ms, as a busy app takes them
                response = await client.post("/events/stress.tick", json=[{"n": sent + i} for i in range(20)])
                assert response.status_code == 200, response.text
                sent += 20
                await asyncio.sleep(0.02)
        finally:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
        out, err = await asyncio.wait_for(operator.communicate(), timeout=120)
        assert operator.returncode == 0, err.decode()
        stats = forwarder.stats
        await forwarder.shutdown(timeout=1)

    report = json.loads(out)
    assert report["failures"] == [], report["failures"][:3]
    assert len(report["replayed"]) > 10, report  # the operator did act meanwhile
    assert report["commands"] > 30, report
    assert len(polls) > 50
    assert not [error for error in polls if error], [e for e in polls if e][:3]
    assert stats.accepted == sent, stats
    assert stats.dropped == 0, stats
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.records[:3]

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        pending = conn.execute("SELECT id, event_name, body FROM pending").fetchall()
        dead = {row[0] for row in conn.execute("SELECT id FROM dead_letters")}
    conn.close()
    ticks = sorted(json.loads(body)[1]["n"] for _, name, body in pending if name == "stress.tick")
    assert ticks == list(range(sent))  # every accepted event is still there (nothing reached the broker), once
    replayed = {event_id for event_id, name, _ in pending if name == "old.event"}
    assert replayed == set(report["replayed"])
    assert replayed | dead == set(seeded)
    assert not replayed & dead
