"""An operator replaying or purging a large dead-letter table from another process while the app writes its spool.

One transaction over the whole table would hold SQLite's write lock for as long as it takes, and the app's writer
gives up after its busy timeout: the command line works in short transactions, and the app writes in between.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fastapi_events.delivery._records import ADMIN_BATCH
from fastapi_events.delivery._spool import SpoolDB
from fastapi_events.delivery._store import DeadLetter
from fastapi_events.delivery._transport import OutboundMessage

ROOT = Path(__file__).resolve().parents[2]
SEEDED = 50_000
DESTINATION = "orders"


class AppWriter:
    """The forwarder's spool writer, as the app runs it: its own connection (flock, busy timeout), a thread
    writing a few events per transaction. Each transaction also reads how many dead letters are left."""

    def __init__(self, db: SpoolDB) -> None:
        self.db = db
        self.written: list[str] = []
        self.failures: list[BaseException] = []
        self.dead_seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="app-spool-writer")

    def __enter__(self) -> AppWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            messages = [
                OutboundMessage(f"live-{n + k}", "order.live", b'["order.live",{}]', {}, None) for k in range(5)
            ]
            try:
                with self.db.transaction():
                    self.db.insert_pending(DESTINATION, messages, time.time())
                    self.dead_seen.add(self.db.count_dead())
            except sqlite3.Error as exc:  # "database is locked": the busy timeout ran out
                self.failures.append(exc)
                continue
            self.written += [m.id for m in messages]
            n += len(messages)
            time.sleep(0.002)


def seed(db: SpoolDB) -> list[str]:
    ids = [f"dead-{i:05d}" for i in range(SEEDED)]
    body = b'["order.placed",{"order_id":1,"lines":[{"sku":"tea","quantity":2}]}]'
    dead = [DeadLetter(OutboundMessage(i, "order.placed", body, {"k": "v"}, None), "broker said no", 3) for i in ids]
    with db.transaction():
        db.insert_dead(DESTINATION, dead, time.time())
    return ids


def spool_cli(*args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "fastapi_events", "spool", *args, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


@pytest.mark.parametrize("verb", ["replay", "purge"])
def test_a_large_dead_letter_table_is_handled_from_another_process_while_the_app_writes(
    spool_path: str, verb: str
) -> None:
    app = SpoolDB(spool_path, lock=True)
    try:
        ids = seed(app)
        with AppWriter(app) as writer:
            answer = spool_cli(verb, spool_path, "--all") if verb == "replay" else spool_cli(verb, spool_path)
        assert writer.failures == []  # no write of the app's failed or gave up waiting
        assert answer == ({"replayed": SEEDED, "skipped": []} if verb == "replay" else {"purged": SEEDED})
        # The app wrote while the operator was halfway through: the table was not held in one transaction.
        assert {n for n in writer.dead_seen if 0 < n < SEEDED}
        assert min(writer.dead_seen) == 0  # and went on once it was done
        rows = app.conn.execute("SELECT id FROM pending ORDER BY seq").fetchall()
        live = [i for (i,) in rows if i.startswith("live-")]
        assert live == writer.written  # every event the app wrote, in order
        replayed = [i for (i,) in rows if i.startswith("dead-")]
        assert replayed == (ids if verb == "replay" else [])  # every dead letter once, oldest first
        assert app.count_dead() == 0
        assert app.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        app.close()


def test_a_long_list_of_ids_is_replayed_and_purged_in_batches(spool_path: str) -> None:
    """More ids than SQLite takes host parameters in one statement on old builds (999)."""
    app = SpoolDB(spool_path, lock=True)
    try:
        ids = seed(app)
        chosen = ids[: 3 * ADMIN_BATCH + 7]
        admin = SpoolDB(spool_path, create=False)
        try:
            moved, skipped = admin.replay(chosen[::2])
            removed = admin.purge(chosen[1::2])
        finally:
            admin.close()
        assert (moved, skipped) == (len(chosen[::2]), [])
        assert removed == len(chosen[1::2])
        assert [i for (i,) in app.conn.execute("SELECT id FROM pending ORDER BY seq")] == chosen[::2]
        assert app.count_dead() == SEEDED - len(chosen)
    finally:
        app.close()
