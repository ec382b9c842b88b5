"""What an in-flight forwarded event keeps alive: GC-tracked objects and bytes, per event and per request.

The cyclic garbage collector's pauses grow with the number of tracked objects, and a full collection is due
once the objects that survived into the oldest generation reach a quarter of it; so during a forwarding burst what
each waiting event keeps alive matters. A forwarder whose broker never answers holds N requests x 10 events:

* ``delivery``: ``ForwardHandler.handle_many`` of each request's 10 events (the delivery layer alone: stored
  entries, encoded messages, the request's hand-over wait);
* ``request``: the same events dispatched by N concurrent requests through a FastAPI app and
  ``EventHandlerASGIMiddleware`` (everything a request waiting for its hand-over holds: the app's frames too).

Measured as the difference between N and 2N requests in flight (``gc.get_objects()`` count, tracemalloc), after
``gc.collect()``; payload ``{"i": i}``. Run: ``python benchmarks/bench_inflight.py [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from _common import Figure, emit, load_note, package_info
from bench_core import http_call
from fastapi import FastAPI
from starlette.responses import Response

from fastapi_events.delivery import ForwardHandler
from fastapi_events.delivery._transport import EntryResult, OutboundMessage
from fastapi_events.dispatcher import dispatch
from fastapi_events.middleware import EventHandlerASGIMiddleware

EVENTS_PER_REQUEST = 10


class Unanswered:
    """A broker that accepts connections and never answers a send."""

    system = "bench"
    destination = "nowhere"
    max_batch_count = 10
    max_batch_bytes = 256_000
    max_message_bytes = 256_000

    def message_size(self, message: OutboundMessage) -> int:
        return len(message.body) + 100

    async def open(self) -> None:
        return None

    async def send_batch(self, batch: Sequence[OutboundMessage]) -> Sequence[EntryResult]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        return None


def forwarder() -> ForwardHandler:
    return ForwardHandler(Unanswered(), max_queue_size=1_000_000, flush_timeout=3600)


def events(r: int) -> list[tuple[str, dict[str, int]]]:
    return [("bench.tick", {"i": i, "r": r}) for i in range(EVENTS_PER_REQUEST)]


async def held(start: Callable[[int], Awaitable[Any]], n: int) -> tuple[int, int, collections.Counter[str]]:
    """(tracked objects, traced bytes, objects by type) once ``n`` more requests wait."""
    tasks = [asyncio.ensure_future(start(r)) for r in range(n)]
    for _ in range(20):
        await asyncio.sleep(0.01)
    gc.collect()
    objects = gc.get_objects()
    by_type = collections.Counter(type(o).__name__ for o in objects)
    count = len(objects)
    del objects
    held.tasks.extend(tasks)  # type: ignore[attr-defined]
    return count, tracemalloc.get_traced_memory()[0], by_type


held.tasks = []  # type: ignore[attr-defined]


async def measure(kind: str, n: int) -> dict[str, Any]:
    handler = forwarder()
    if kind == "delivery":
        await handler.startup()

        async def start(r: int) -> None:
            await handler.handle_many(events(r))

    else:
        app = FastAPI()
        app.add_middleware(EventHandlerASGIMiddleware, handlers=[handler])

        @app.get("/events/{r}")
        async def route(r: int) -> Response:
            for name, payload in events(r):
                dispatch(name, payload=payload)
            return Response(b"ok")

        async def start(r: int) -> None:
            await http_call(app, f"/events/{r}", {})

    await held(start, 20)  # warm-up: lazy imports, caches, the sender task
    objects_a, bytes_a, types_a = await held(start, n)
    objects_b, bytes_b, types_b = await held(start, n)
    queued = handler.stats.queued
    for task in held.tasks:  # type: ignore[attr-defined]
        task.cancel()
    await asyncio.gather(*held.tasks, return_exceptions=True)  # type: ignore[attr-defined]
    held.tasks.clear()  # type: ignore[attr-defined]
    top = (types_b - types_a).most_common(8)
    return {
        "objects": (objects_b - objects_a) / n,
        "bytes": (bytes_b - bytes_a) / n,
        "queued": queued,
        "types": ", ".join(f"{name} {count / n:.1f}" for name, count in top),
    }


async def main_async(n: int) -> list[Figure]:
    tracemalloc.start()
    figures = []
    for kind in ("delivery", "request"):
        found = await measure(kind, n)
        per_event = {k: found[k] / EVENTS_PER_REQUEST for k in ("objects", "bytes")}
        extra = {"per_request": round(found["objects"], 1), "queued": found["queued"], "types": found["types"]}
        figures.append(Figure("inflight", f"{kind}_objects_per_event", f"{kind}: GC-tracked objects per event",
                              per_event["objects"], "objects", extra=extra))  # fmt: skip
        figures.append(Figure("inflight", f"{kind}_bytes_per_event", f"{kind}: traced bytes per event",
                              per_event["bytes"], "bytes", extra={"per_request": round(found["bytes"])}))  # fmt: skip
    tracemalloc.stop()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="one JSON object per figure on stdout")
    parser.add_argument("--requests", type=int, default=1000, help="requests held in flight per step")
    args = parser.parse_args(argv)
    figures = asyncio.run(main_async(args.requests))
    meta = {**package_info(), "load": load_note(), "method": f"{args.requests} vs {2 * args.requests} requests held"}
    emit("bench_inflight (what waiting events keep alive)", meta, figures, args.json)


if __name__ == "__main__":
    main()
