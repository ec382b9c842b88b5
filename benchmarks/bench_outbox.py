"""The transactional outbox's costs, each beside its baseline measured in the same run (issue 9).

* ``dispatch(..., session=)`` + commit against the same transaction without it: extra time per event, on
  PostgreSQL (psycopg 3, sync session) and on a SQLite file, with 1 and 10 events per transaction;
* relay throughput, PostgreSQL -> Redis Streams forwarder on loopback: one standalone relay process, then two
  (goal >= 5 000 events/s for one relay);
* commit -> local handler latency, p50 / p99: in the committing process (goal p50 <= 5 ms) and in a relay in
  another process woken by LISTEN/NOTIFY (goal p50 <= 20 ms).

PostgreSQL and redis-server are started here (tests/_postgres.py, tests/_servers.py). Run:
``python benchmarks/bench_outbox.py [--json] [--events 20000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))

import sqlalchemy as sa  # noqa: E402
from _common import Figure, emit, median, package_info  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from fastapi_events import EventHandlerASGIMiddleware, dispatch  # noqa: E402
from fastapi_events.handlers.local import LocalHandler  # noqa: E402
from fastapi_events.handlers.null import NullHandler  # noqa: E402
from fastapi_events.outbox import SQLAlchemyOutbox  # noqa: E402
from tests._postgres import PostgresServer  # noqa: E402
from tests._servers import RedisServer  # noqa: E402

metadata = sa.MetaData()
orders = sa.Table("orders", metadata, sa.Column("id", sa.Integer, primary_key=True, autoincrement=True))
PAYLOAD = {"order_id": 7, "customer": "c-42", "items": [{"sku": "A-1", "qty": 2}] * 3}


_middlewares: list[EventHandlerASGIMiddleware] = []


async def _noop_app(scope: Any, receive: Any, send: Any) -> None:
    return None


def _writer(engine: sa.Engine, middleware_id: int, relay: bool = False) -> SQLAlchemyOutbox:
    """An outbox registered under ``middleware_id`` for ``dispatch(middleware_id=)``; nothing here delivers.

    ``relay=False`` (write only) rows are free for any relay and each commit sends a NOTIFY; ``relay=True`` rows
    are leased to the writing process (which would deliver them itself) and need no NOTIFY.
    """
    outbox = SQLAlchemyOutbox(engine, relay=relay)
    # Kept alive: dispatch(middleware_id=) finds runtimes through a weak mapping.
    _middlewares.append(
        EventHandlerASGIMiddleware(_noop_app, handlers=[NullHandler()], middleware_id=middleware_id, outbox=outbox)
    )
    with engine.begin() as conn:
        outbox.table.create(conn, checkfirst=True)
        metadata.create_all(conn)
    return outbox


# -- 1. cost of dispatch(session=) + commit ----------------------------------------------------------------------


def dispatch_cost(engine: sa.Engine, label: str, key: str, rounds: int, tx: int, relay: bool) -> list[Figure]:
    middleware_id = hash((label, relay)) & 0xFFFFFF
    _writer(engine, middleware_id, relay)
    mode = "relay=True" if relay else "relay=False, + NOTIFY" if key == "pg" else "relay=False"
    key = f"{key}_{'relay' if relay else 'writeonly'}"
    figures = []
    for per_tx in (1, 10):

        def run(events: int) -> tuple[float, float]:
            started, cpu = time.perf_counter(), time.process_time()
            for _ in range(tx):
                with Session(engine) as session:
                    session.execute(orders.insert())
                    for _ in range(events):
                        dispatch("order.placed", PAYLOAD, session=session, middleware_id=middleware_id)
                    session.commit()
            return (time.perf_counter() - started) / tx, (time.process_time() - cpu) / tx

        run(per_tx)  # warm-up: connections, statement caches
        base, with_events = [], []
        for _ in range(rounds):  # interleaved, so that load drift hits both alike
            base.append(run(0))
            with_events.append(run(per_tx))
        wall = [(w[0] - b[0]) / per_tx * 1e6 for w, b in zip(with_events, base, strict=True)]
        cpu = [(w[1] - b[1]) / per_tx * 1e6 for w, b in zip(with_events, base, strict=True)]
        figures.append(
            Figure(
                "outbox",
                f"dispatch_cost_{key}_k{per_tx}",
                f"{label} ({mode}): dispatch(session=) + commit, extra wall per event (K={per_tx})",
                median(wall),
                "us",
                extra={
                    "cpu_us": round(median(cpu), 1),
                    "tx_without_us": round(median([b[0] for b in base]) * 1e6, 1),
                    "tx_with_us": round(median([w[0] for w in with_events]) * 1e6, 1),
                },
            )
        )
    return figures


# -- 2. relay throughput -------------------------------------------------------------------------------------------


def fill(engine: sa.Engine, middleware_id: int, events: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM fastapi_events_outbox"))
    for start in range(0, events, 500):
        with Session(engine) as session:
            for _ in range(min(500, events - start)):
                dispatch("order.placed", PAYLOAD, session=session, middleware_id=middleware_id)
            session.commit()


def start_relay(
    url: str, handlers: str, env: dict[str, str], log: Path, poll_interval: float = 1.0
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "fastapi_events", "relay", url, "--handlers", handlers]
    command += ["--poll-interval", str(poll_interval)]
    with open(log, "ab") as out:
        return subprocess.Popen(
            command,
            cwd=BENCH_DIR,
            env={**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(BENCH_DIR)])},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def relay_throughput(pg: PostgresServer, database: str, redis_url: str, events: int, workdir: Path) -> list[Figure]:
    import redis

    engine = sa.create_engine(pg.url(database))
    middleware_id = 91
    _writer(engine, middleware_id)
    client = redis.Redis.from_url(redis_url)
    figures = []
    for relays in (1, 2):
        stream = f"bench-{relays}"
        client.delete(stream)
        fill(engine, middleware_id, events)
        env = {"BENCH_STREAM": stream, "BENCH_REDIS": redis_url}
        procs = [
            start_relay(
                pg.url(database, "asyncpg"), "_outbox_handlers:forward", env, workdir / f"relay-{relays}-{i}.log"
            )
            for i in range(relays)
        ]
        first = last = None
        cpu_first = 0.0
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            count = client.xlen(stream)
            now = time.perf_counter()
            if count and first is None:
                first = (now, count)
                cpu_first = sum(cpu_seconds(proc.pid) for proc in procs)  # start-up and imports excluded
            if count >= events:
                last = (now, count)
                break
            time.sleep(0.01)
        cpu = sum(cpu_seconds(proc.pid) for proc in procs) - cpu_first
        for proc in procs:
            stop(proc)
        if first is None or last is None:
            raise RuntimeError(f"{relays} relay(s) did not deliver {events} events; see {workdir}")
        rate = (last[1] - first[1]) / (last[0] - first[0])
        figures.append(
            Figure(
                "outbox",
                f"relay_events_per_s_{relays}",
                f"relay throughput, PostgreSQL -> Redis Streams, {relays} relay process(es)",
                rate,
                "events/s",
                target=5000.0 if relays == 1 else None,
                target_op=">=" if relays == 1 else None,
                # CPU of the relay processes per event while delivering: what a core of their own would sustain,
                # whatever the load of the machine the run shared.
                extra={"events": events, "relay_cpu_us_per_event": round(cpu / (last[1] - first[1]) * 1e6, 1)},
            )
        )
    engine.dispose()
    return figures


# -- 3. commit -> handler latency --------------------------------------------------------------------------------


def percentiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=100)
    return statistics.median(values), q[98]


async def same_process_latency(url: str, samples: int) -> list[float]:
    engine = create_async_engine(url)
    local = LocalHandler()
    arrived: dict[str, float] = {}
    waiter: asyncio.Future[None] | None = None

    @local.register(event_name="*")
    async def seen(event: Any) -> None:
        arrived[event[1]["n"]] = time.perf_counter()
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    outbox = SQLAlchemyOutbox(engine, table_name="latency_outbox")
    middleware = EventHandlerASGIMiddleware(_noop_app, handlers=[local], middleware_id=92, outbox=outbox)
    await middleware._runtime.startup()
    await outbox.start()
    latencies = []
    for n in range(samples + 20):
        waiter = asyncio.get_running_loop().create_future()
        async with AsyncSession(engine) as session:
            await session.execute(orders.insert())
            dispatch("order.placed", {"n": n}, session=session, middleware_id=92)
            await session.commit()
            committed = time.perf_counter()
        await asyncio.wait_for(waiter, 10)
        if n >= 20:  # warm-up
            latencies.append((arrived[n] - committed) * 1000)
    await outbox.stop(5)
    await engine.dispose()
    return latencies


def other_process_latency(pg: PostgresServer, database: str, samples: int, workdir: Path) -> list[float]:
    out = workdir / "latency.txt"
    engine = sa.create_engine(pg.url(database))
    writer = _writer(engine, 93)
    relay = start_relay(
        pg.url(database, "asyncpg"), "_outbox_handlers:latency", {"BENCH_OUT": str(out)}, workdir / "relay-latency.log"
    )
    try:
        time.sleep(3)  # the relay is up and listening
        committed: dict[str, float] = {}
        for n in range(samples + 20):
            with Session(engine) as session:
                dispatch("order.placed", {"n": n}, session=session, middleware_id=93)
                session.commit()
                committed[str(n)] = time.time()
            time.sleep(0.02)  # one at a time: latency, not throughput
        time.sleep(1)
    finally:
        stop(relay)
    lines = out.read_text().split("\n") if out.exists() else []
    arrivals = [float(line.split()[1]) for line in lines if line.strip()]
    del writer
    sent = [committed[str(n)] for n in range(samples + 20)]
    engine.dispose()
    if len(arrivals) != len(sent):
        raise RuntimeError(f"{len(arrivals)} of {len(sent)} events reached the other process; see {workdir}")
    # Arrival order is commit order here: one event in flight at a time.
    return [(a - s) * 1000 for a, s in zip(arrivals[20:], sent[20:], strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--events", type=int, default=20_000, help="events per relay throughput run")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--samples", type=int, default=300, help="latency samples")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
    pg, redis_server = PostgresServer(), RedisServer()
    figures: list[Figure] = []
    try:
        pg.start()
        redis_server.start()
        database = pg.create_database()
        sqlite = sa.create_engine(f"sqlite:///{workdir / 'bench.db'}")
        for relay in (True, False):
            figures += dispatch_cost(sa.create_engine(pg.url(database)), "PostgreSQL", "pg", args.rounds, 100, relay)
        figures += dispatch_cost(sqlite, "SQLite file", "sqlite", args.rounds, 100, True)
        figures += relay_throughput(pg, database, redis_server.url, args.events, workdir)
        same = asyncio.run(same_process_latency(pg.url(database, "asyncpg"), args.samples))
        other = other_process_latency(pg, database, args.samples, workdir)
        for key, title, values, goal in (
            ("same_process", "commit -> local handler, same process", same, 5.0),
            ("notify", "commit -> local handler, other process (NOTIFY)", other, 20.0),
        ):
            p50, p99 = percentiles(values)
            figures.append(Figure("outbox", f"latency_{key}_p50_ms", f"{title}, p50", p50, "ms", goal, "<="))
            figures.append(Figure("outbox", f"latency_{key}_p99_ms", f"{title}, p99", p99, "ms"))
    finally:
        redis_server.close()
        pg.close()
    emit("outbox", package_info(), figures, args.json)


if __name__ == "__main__":
    main()
