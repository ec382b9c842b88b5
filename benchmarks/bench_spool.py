"""Spool write cost per event, amortised, as a forwarder with ``spool_path=`` pays it.

Every figure goes through the real path: ``SpoolStore`` (the forwarder's view of the spool) on an asyncio loop,
each operation handed to the single writer thread, which commits whatever queued up meanwhile in one
transaction (group commit). Events are ~200-byte JSON bodies with the usual attributes.

* ``write``: wall time of storing events (``add``: INSERT + COMMIT, awaited as ``handle_many`` awaits it) divided
  by the number of events, for requests of K events, issued one after another or C at a time;
* ``cycle``: the full life of an event in the spool - stored, read back by the sender (``due``), deleted once
  delivered (``resolve``) - per event, with the sender working in rounds of 100 as the forwarder does;
* ``loop CPU``: CPU time the event-loop thread itself spent per stored event (the part that competes with
  request handling; the rest runs in the writer thread).

Goal (issue 3): <= 50 us/event amortised with batching. Run: ``python benchmarks/bench_spool.py [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
import uuid

from _common import Figure, emit, median, package_info, spread

from fastapi_events.codec import attributes_for, encode_event
from fastapi_events.delivery import OutboundMessage
from fastapi_events.delivery._spool_writer import SpoolStore, acquire

DESTINATION = "https://sqs.eu-central-1.amazonaws.com/123456789012/orders"


def _messages(count: int) -> list[OutboundMessage]:
    out = []
    for i in range(count):
        event_id = uuid.uuid4().hex
        event = ("order.created", {"order_id": i, "customer": "c-42", "items": [{"sku": "A-1", "qty": 2}] * 3})
        out.append(OutboundMessage(event_id, "order.created", encode_event(event), attributes_for(event, event_id)))
    return out


async def _write(store: SpoolStore, requests: int, per_request: int, concurrency: int) -> tuple[float, float]:
    batches = [_messages(per_request) for _ in range(requests)]
    cpu0, t0 = time.thread_time(), time.perf_counter()
    for start in range(0, requests, concurrency):
        await asyncio.gather(*(store.add(b) for b in batches[start : start + concurrency]))
    wall, cpu = time.perf_counter() - t0, time.thread_time() - cpu0
    events = requests * per_request
    return wall / events * 1e6, cpu / events * 1e6


async def _cycle(store: SpoolStore, events: int, per_request: int, concurrency: int) -> float:
    batches = [_messages(per_request) for _ in range(events // per_request)]
    t0 = time.perf_counter()

    async def produce() -> None:
        for start in range(0, len(batches), concurrency):
            await asyncio.gather(*(store.add(b) for b in batches[start : start + concurrency]))

    producer = asyncio.create_task(produce())
    done = 0
    while done < events:
        due, _ = await store.due(time.time(), 100)
        if not due:
            await asyncio.sleep(0)
            continue
        await store.resolve(due, [], [])
        done += len(due)
    await producer
    return (time.perf_counter() - t0) / events * 1e6


async def run(rounds: int) -> list[Figure]:
    scenarios = [  # (label, requests, events per request, concurrent requests)
        ("1 event/request, sequential (no batching)", 2000, 1, 1),
        ("10 events/request, sequential", 500, 10, 1),
        ("1 event/request, 50 concurrent", 5000, 1, 50),
        ("10 events/request, 50 concurrent", 1000, 10, 50),
    ]
    results: dict[str, list[tuple[float, float]]] = {s[0]: [] for s in scenarios}
    cycles: list[float] = []
    for _ in range(rounds):
        directory = tempfile.mkdtemp(prefix="bench-spool-")
        try:
            writer = await acquire(os.path.join(directory, "spool.db"))
            store = SpoolStore(writer, DESTINATION)
            await _write(store, 100, 10, 10)  # warm-up: schema, page cache
            for label, requests, per_request, concurrency in scenarios:
                results[label].append(await _write(store, requests, per_request, concurrency))
            cycles.append(await _cycle(store, 10_000, 10, 50))
            await store.close()
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    figures = []
    for label, _r, per_request, concurrency in scenarios:
        walls = [w for w, _ in results[label]]
        cpus = [c for _, c in results[label]]
        batched = per_request > 1 or concurrency > 1
        figures.append(
            Figure(
                "spool",
                f"write_us_{per_request}x{concurrency}",
                f"write, {label}",
                median(walls),
                "us/event",
                50.0 if batched else None,
                "<=" if batched else None,
                {"iqr": spread(walls), "loop_cpu_us": round(median(cpus), 2)},
            )
        )
    figures.append(
        Figure(
            "spool",
            "cycle_us",
            "insert + read + delete, 10 events/request, 50 concurrent",
            median(cycles),
            "us/event",
            extra={"iqr": spread(cycles)},
        )
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per figure")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures = asyncio.run(run(args.rounds))
    meta = package_info()
    meta["method"] = f"median of {args.rounds} rounds, fresh spool file per round, synchronous=NORMAL (WAL)"
    emit("spool write cost", meta, figures, args.json)


if __name__ == "__main__":
    main()
