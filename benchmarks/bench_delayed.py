"""Delayed outbox events: how late after its due time each of 10 000 events is handled (issue 19).

10 000 events due within a 10 s window (evenly spread) are committed on PostgreSQL by a write-only process while
standalone relays wait with ``--poll-interval 60``: every event handled on time was woken for by a relay's timer.
Lateness = handler time - due time, p50 and p99, with one relay and with two (rounds interleaved, medians of the
rounds). Goal: p99 <= 1 s. Baseline, measured in the same run: 10 000 asyncio timers (``loop.call_at``) set for the
same due times in one process - the lateness of a bare timer on this machine, which no relay can beat. Every event
is counted at the far end: each must be handled exactly once (a handler line per event id).

PostgreSQL is started here (tests/_postgres.py). Run:
``python benchmarks/bench_delayed.py [--json] [--events 10000] [--window 10] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))

import sqlalchemy as sa  # noqa: E402
from _common import Figure, emit, load_note, median, package_info  # noqa: E402
from bench_outbox import start_relay, stop  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from fastapi_events import EventHandlerASGIMiddleware, dispatch  # noqa: E402
from fastapi_events.handlers.null import NullHandler  # noqa: E402
from fastapi_events.outbox import SQLAlchemyOutbox  # noqa: E402
from tests._postgres import PostgresServer  # noqa: E402

WRITER_ID = 19
LEAD = 3.0  # seconds between the end of writing and the first due time


async def _noop_app(scope: Any, receive: Any, send: Any) -> None:
    return None


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def write_schedule(engine: sa.Engine, events: int, window: float) -> None:
    """Commit ``events`` delayed events, due evenly within ``window`` seconds from ``LEAD`` s after writing."""
    # Written in about a second on PostgreSQL; a slow machine gets a later start rather than late rows.
    start = time.time() + LEAD + events / 2000
    step = window / events
    for first in range(0, events, 500):
        with Session(engine) as session:
            for n in range(first, min(events, first + 500)):
                due = start + n * step
                at = datetime.datetime.fromtimestamp(due, datetime.timezone.utc)
                dispatch("bench.due", {"n": n, "due": due}, session=session, at=at, middleware_id=WRITER_ID)
            session.commit()
    if time.time() > start:
        raise RuntimeError("writing took longer than planned: the first events were due before they committed")


def relay_round(pg: PostgresServer, relays: int, events: int, window: float, workdir: Path) -> list[float]:
    database = pg.create_database()
    engine = sa.create_engine(pg.url(database))
    outbox = SQLAlchemyOutbox(engine, relay=False)
    # Kept alive until the round ends: dispatch(middleware_id=) finds runtimes through a weak mapping.
    middleware = EventHandlerASGIMiddleware(_noop_app, handlers=[NullHandler()], middleware_id=WRITER_ID, outbox=outbox)
    with engine.begin() as conn:
        outbox.table.create(conn)
    out = workdir / f"seen-{relays}-{time.monotonic_ns()}.txt"
    url, env, log = pg.url(database, "asyncpg"), {"BENCH_OUT": str(out)}, workdir / "relays.log"
    procs = [start_relay(url, "_outbox_handlers:delayed", env, log, poll_interval=60) for _ in range(relays)]
    try:
        time.sleep(4)  # the relays are up and listening
        write_schedule(engine, events, window)
        deadline = time.time() + LEAD + events / 2000 + window + 60
        while time.time() < deadline:
            with engine.connect() as conn:
                if not conn.execute(sa.text("SELECT count(*) FROM fastapi_events_outbox")).scalar_one():
                    break
            time.sleep(0.5)
        time.sleep(1)  # the last handler lines are flushed; a duplicate would show now
    finally:
        for proc in procs:
            stop(proc)
        del middleware
        engine.dispose()
    lines = [line.split() for line in out.read_text().splitlines() if line.strip()] if out.exists() else []
    counts = Counter(line[0] for line in lines)
    if len(counts) != events or any(c != 1 for c in counts.values()):
        duplicates = sum(c - 1 for c in counts.values())
        raise RuntimeError(f"{len(counts)} of {events} events handled, {duplicates} twice; see {workdir}")
    early = [line for line in lines if float(line[2]) < float(line[1])]
    if early:
        raise RuntimeError(f"{len(early)} events handled before their due time")
    return [(float(line[2]) - float(line[1])) * 1000 for line in lines]


async def timer_baseline(events: int, window: float) -> list[float]:
    loop = asyncio.get_running_loop()
    start = time.time() + 1.0
    late: list[float] = []
    done = asyncio.Event()

    def fire(due: float) -> None:
        late.append((time.time() - due) * 1000)
        if len(late) == events:
            done.set()

    for n in range(events):
        due = start + n * window / events
        loop.call_at(loop.time() + (due - time.time()), fire, due)
    await done.wait()
    return late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=10.0, help="seconds the due times are spread over")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-delayed-"))
    pg = PostgresServer()
    results: dict[str, list[tuple[float, float]]] = {"timer": [], "one": [], "two": []}
    try:
        pg.start()
        for _ in range(args.rounds):  # interleaved: each round measures all three
            results["timer"].append(percentiles(asyncio.run(timer_baseline(args.events, args.window))))
            results["one"].append(percentiles(relay_round(pg, 1, args.events, args.window, workdir)))
            results["two"].append(percentiles(relay_round(pg, 2, args.events, args.window, workdir)))
    finally:
        pg.close()
    figures: list[Figure] = []
    base_p99 = median([p99 for _, p99 in results["timer"]])
    labels = {"timer": "bare asyncio timer (baseline)", "one": "one relay", "two": "two relays"}
    for key, label in labels.items():
        p50 = median([p for p, _ in results[key]])
        p99 = median([p for _, p in results[key]])
        goal = 1000.0 if key != "timer" else None
        extra = {"events": args.events, "window_s": args.window, "rounds": args.rounds, "load": load_note()}
        if key != "timer":
            extra["p99_vs_timer_p99"] = round(p99 / base_p99, 1) if base_p99 > 0 else None
        title = f"{args.events} delayed events due within {args.window:g} s, {label}: lateness"
        figures.append(Figure("delayed", f"lateness_{key}_p50_ms", f"{title} p50", p50, "ms", extra=extra))
        figures.append(Figure("delayed", f"lateness_{key}_p99_ms", f"{title} p99", p99, "ms", goal, "<=", extra))
    emit("delayed", package_info(), figures, args.json)


if __name__ == "__main__":
    main()
