"""The durable spool: events survive a broker outage and a restart of the forwarder."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

from fastapi_events.delivery import RetryPolicy
from fastapi_events.delivery._spool import SpoolDB
from fastapi_events.delivery._spool_writer import SpoolWriter
from fastapi_events.delivery._store import DeadLetter
from fastapi_events.delivery._transport import OutboundMessage
from fastapi_events.errors import ConfigurationError
from fastapi_events.handlers.aws import SQSForwardHandler
from tests._loop_lag import LOOP_TIMING, loop_lag, stalls
from tests._sqs import Queue


def _pending(path: str, destination: str | None = None) -> int:
    db = SpoolDB(path)
    try:
        return db.count_pending(destination)
    finally:
        db.close()


@pytest.mark.anyio
async def test_spool_file_and_its_wal_are_private_0600(
    spool_path: str, dead_endpoint: Callable[[], dict[str, str]]
) -> None:
    old = os.umask(0o022)
    try:
        handler = SQSForwardHandler("q", "us-east-1", spool_path=spool_path, **dead_endpoint())
        await handler.handle_many([("user.created", {"email": "a@example.com"})])
    finally:
        os.umask(old)
    for path in (spool_path, spool_path + "-wal", spool_path + ".lock"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    await handler.shutdown(0.1)


@pytest.mark.anyio
async def test_events_outlive_a_broker_outage_and_a_restart(
    spool_path: str, sqs_queue: Queue, dead_endpoint: Callable[[], dict[str, str]]
) -> None:
    # Broker down: events are accepted into the spool, flush times out, shutdown keeps them on disk.
    down = SQSForwardHandler(sqs_queue.name, sqs_queue.region, spool_path=spool_path, **dead_endpoint())
    for i in range(5):
        await down.handle_many([("order.placed", {"i": i * 3 + j}) for j in range(3)])
    assert down.stats.accepted == 15
    assert down.stats.queued == 15
    await down.shutdown(0.2)
    assert await asyncio.to_thread(_pending, spool_path, sqs_queue.name) == 15

    # Same spool_path, broker up: everything left is delivered on start, without any new event.
    up = SQSForwardHandler(sqs_queue.name, sqs_queue.region, spool_path=spool_path, **sqs_queue.handler_kwargs)
    await up.startup()
    received = await asyncio.to_thread(sqs_queue.receive, 15)
    assert sorted(p["i"] for p in sqs_queue.payloads()) == list(range(15))
    assert len(received) == 15
    for _ in range(100):
        if await asyncio.to_thread(_pending, spool_path) == 0:
            break
        await asyncio.sleep(0.05)
    assert await asyncio.to_thread(_pending, spool_path) == 0  # acknowledged entries are removed
    await up.shutdown(5)


@pytest.mark.anyio
async def test_entries_are_written_before_handle_many_returns(
    spool_path: str, dead_endpoint: Callable[[], dict[str, str]]
) -> None:
    handler = SQSForwardHandler("q", "us-east-1", spool_path=spool_path, **dead_endpoint())
    await handler.handle_many([("a", 1), ("b", 2)])
    # Another connection (as after kill -9) already sees them: durable as soon as the handler returns.
    db = SpoolDB(spool_path)
    try:
        assert [r.event_name for r in db.list_pending()] == ["a", "b"]
    finally:
        db.close()
    await handler.shutdown(0.1)


def test_one_process_per_spool_file(spool_path: str) -> None:
    first = SpoolDB(spool_path, lock=True)
    try:
        with pytest.raises(ConfigurationError, match="in use by another process"):
            SpoolDB(spool_path, lock=True)
        SpoolDB(spool_path).close()  # readers (the CLI) are fine
    finally:
        first.close()
    SpoolDB(spool_path, lock=True).close()  # released on close (and by the kernel on kill -9)


# Another process (the command line) reading the spool and closing its connection. SQLite lets the last connection
# to a file checkpoint and delete the WAL; it must see the app's connection and leave the WAL alone.
_OTHER_READER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
print(conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])
conn.close()
"""


@pytest.mark.parametrize("opened", ["reader", "writer", "forwarder's default"])
def test_opening_the_spool_in_the_process_keeps_the_app_writers_locks(spool_path: str, opened: str) -> None:
    app_writer = SpoolDB(spool_path, lock=True)
    try:
        dead = [DeadLetter(OutboundMessage("e1", "order.placed", b"[]", {}, None), "refused")]
        with app_writer.transaction():
            app_writer.insert_dead("orders", dead, 0.0)
        # The inspector (listing, or replaying) opens and closes the same file in the same process meanwhile:
        # closing a descriptor of the file outside SQLite would drop the app's locks on it.
        if opened == "forwarder's default":
            other = SpoolDB(spool_path)
        else:
            other = SpoolDB(spool_path, readonly=opened == "reader", create=False)
        other.close()
        result = subprocess.run(
            [sys.executable, "-c", _OTHER_READER, spool_path], capture_output=True, text=True, timeout=60
        )
        assert result.stdout.strip() == "1", result.stderr
        assert os.path.exists(spool_path + "-wal")  # the other process knew it was not the last connection
        with app_writer.transaction():  # and the app's writer carries on, on an intact file
            app_writer.insert_dead("orders", dead, 0.0)
        assert app_writer.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert app_writer.count_dead() == 2
    finally:
        app_writer.close()


def test_a_reader_never_creates_the_file(spool_path: str) -> None:
    with pytest.raises(FileNotFoundError):
        SpoolDB(spool_path, readonly=True)
    assert not os.path.exists(spool_path)


@pytest.mark.anyio
async def test_two_forwarders_share_one_spool_file_by_destination(spool_path: str, moto_server: object) -> None:
    kwargs = dict(moto_server.client_kwargs)  # type: ignore[attr-defined]
    first, second = Queue(kwargs), Queue(kwargs)
    h1 = SQSForwardHandler(first.name, first.region, spool_path=spool_path, **first.handler_kwargs)
    h2 = SQSForwardHandler(second.name, second.region, spool_path=spool_path, **second.handler_kwargs)
    await h1.handle_many([("one", i) for i in range(4)])
    await h2.handle_many([("two", i) for i in range(6)])
    await h1.flush(20)
    await h2.flush(20)
    await h1.shutdown(1)
    await h2.shutdown(1)
    assert {r.event_name for r in await asyncio.to_thread(first.receive, 4)} == {"one"}
    assert {r.event_name for r in await asyncio.to_thread(second.receive, 6)} == {"two"}
    assert len(first.drain_rest()) == 4
    assert len(second.drain_rest()) == 6


@pytest.mark.anyio
async def test_sqlite_work_never_runs_on_the_event_loop_thread(
    spool_path: str, dead_endpoint: Callable[[], dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[str] = set()
    original = SpoolWriter._execute

    def spy(self: SpoolWriter, db: object, ops: list[object]) -> None:
        threads.add(threading.current_thread().name)
        original(self, db, ops)  # type: ignore[arg-type]

    monkeypatch.setattr(SpoolWriter, "_execute", spy)
    handler = SQSForwardHandler("q", "us-east-1", spool_path=spool_path, **dead_endpoint())
    await handler.handle_many([("a", 1)])
    await handler.shutdown(0.1)
    assert threads
    assert all(name.startswith("fastapi_events-spool") for name in threads)
    assert threading.current_thread().name not in threads


@pytest.mark.anyio
async def test_replayed_dead_letters_are_relayed_by_the_running_forwarder(spool_path: str, sqs_queue: Queue) -> None:
    handler = SQSForwardHandler(
        sqs_queue.name,
        sqs_queue.region,
        spool_path=spool_path,
        retry=RetryPolicy(max_attempts=3),
        **sqs_queue.handler_kwargs,
    )
    await handler.handle_many([("kept", 1)])
    await handler.flush(10)
    # Put a dead letter in the table as an earlier failure would have, then replay it from another connection.
    db = SpoolDB(spool_path)
    try:
        from fastapi_events.delivery import OutboundMessage
        from fastapi_events.delivery._store import DeadLetter

        message = OutboundMessage("replay-me", "late", b'["late", {"n": 7}]', {"event_name": "late"})
        with db.transaction():
            db.insert_dead(sqs_queue.name, [DeadLetter(message, "broker said no", 3)], 0.0)
        assert db.replay(["replay-me"]) == (1, [])
    finally:
        db.close()
    received = await asyncio.to_thread(sqs_queue.receive, 2, 15)
    assert sorted(r.body for r in received) == [
        '["kept",1]',
        '["late", {"n": 7}]',
    ]
    await handler.shutdown(1)


@pytest.mark.anyio
@pytest.mark.serial(reason=LOOP_TIMING)
async def test_spooling_and_delivering_never_stall_the_event_loop(spool_path: str, sqs_queue: Queue) -> None:
    handler = SQSForwardHandler(sqs_queue.name, sqs_queue.region, spool_path=spool_path, **sqs_queue.handler_kwargs)
    await handler.startup()
    async with loop_lag() as lags:
        # 300 events from 60 concurrent "requests": spool writes, reads and deletes, plus boto3 sends, all meanwhile.
        await asyncio.gather(*(handler.handle_many([("tick", r * 5 + i) for i in range(5)]) for r in range(60)))
        await handler.flush(60)
    assert handler.stats.delivered == 300
    # SQLite and boto3 run in their own threads. Had the 30 send_message_batch round trips (40+ ms each on moto)
    # run on the loop, there would be 30 stalls; the few allowed cover the OS descheduling a busy test machine.
    stalled = stalls(lags)
    assert len(stalled) <= 3, f"event loop stalled {len(stalled)} times: {[round(x * 1000) for x in stalled]} ms"
    await handler.shutdown(5)
