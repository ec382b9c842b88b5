"""Replaying and purging a large set of an SQLite outbox's dead letters from the command line while the app
commits to the same file: short transactions, the app's commits in between, none of them failing."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from fastapi_events.delivery import RetryPolicy
from tests._servers import wait_for

from ._app import Recorder, count_rows, create_orders, make_app

ROOT = Path(__file__).resolve().parents[2]
TABLE = "fastapi_events_outbox"
DOUBLINGS = 11  # 3 dead letters from the app, doubled: 6 144


def dead_letters(db: Path) -> int:
    """A few dead letters the real way (a handler failing every attempt), then copies of them under new ids."""
    engine = sa.create_engine(f"sqlite:///{db}")
    create_orders(engine)
    app, _ = make_app(engine, [Recorder(failures=1000)], retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
    with TestClient(app) as client:
        for n in range(1, 4):
            client.post(f"/orders/{n}")
        wait_for(lambda: count_rows(engine, where="WHERE state = 'dead'") == 3, timeout=30)
    with engine.begin() as conn:
        columns = [c["name"] for c in sa.inspect(conn).get_columns(TABLE) if c["name"] != "seq"]
        for doubling in range(DOUBLINGS):
            copied = ", ".join(f"event_id || '-{doubling}'" if c == "event_id" else c for c in columns)
            conn.exec_driver_sql(f"INSERT INTO {TABLE} ({', '.join(columns)}) SELECT {copied} FROM {TABLE}")
    engine.dispose()
    return 3 << DOUBLINGS


class AppCommits:
    """The app's transactions on the same file, every few milliseconds, with SQLAlchemy's default busy timeout
    (5 s); each also reads how many dead letters are left."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, timeout=5.0, isolation_level=None, check_same_thread=False)
        self.conn.execute("CREATE TABLE IF NOT EXISTS ticks (n INTEGER)")
        self.committed = 0
        self.failures: list[BaseException] = []
        self.dead_seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> AppCommits:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)
        self.conn.close()

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                self.conn.execute("INSERT INTO ticks VALUES (?)", (self.committed,))
                (dead,) = self.conn.execute(f"SELECT count(*) FROM {TABLE} WHERE state = 'dead'").fetchone()
                self.conn.execute("COMMIT")
            except sqlite3.Error as exc:  # "database is locked": the busy timeout ran out
                self.failures.append(exc)
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                continue
            self.committed += 1
            self.dead_seen.add(dead)


@pytest.mark.parametrize("verb", ["replay", "purge"])
def test_the_command_line_leaves_room_for_the_app_on_a_large_outbox(tmp_path: Path, verb: str) -> None:
    db = tmp_path / "app.db"
    total = dead_letters(db)
    url = f"sqlite:///{db}"
    with AppCommits(db) as app:
        result = subprocess.run(
            [sys.executable, "-m", "fastapi_events", "spool", verb, url, *(["--all"] if verb == "replay" else []),
             "--json"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ({"replayed": total, "skipped": []} if verb == "replay" else {"purged": total})
    assert app.failures == []
    assert {n for n in app.dead_seen if 0 < n < total}  # the app committed while the command was halfway
    engine = sa.create_engine(url)
    try:
        assert count_rows(engine, where="WHERE state = 'dead'") == 0
        assert count_rows(engine, where="WHERE state = 'pending'") == (total if verb == "replay" else 0)
        assert count_rows(engine, "ticks") == app.committed
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
    finally:
        engine.dispose()
