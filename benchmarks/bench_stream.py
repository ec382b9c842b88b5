"""Live streams: one uvicorn process, N concurrent SSE subscribers, events produced at a steady rate.

Two servers, each a uvicorn process of its own (1 worker, 127.0.0.1, no access log), measured one after the other
in the same run by the same client:

* ``ours``: FastAPI + ``EventHandlerASGIMiddleware`` + ``EventStream()`` mounted at ``/events``; a task in the
  server ``dispatch()``-es the events (``middleware_id=``), so they take the real path: middleware runtime ->
  ``EventStream.handle_many`` -> every subscriber's queue -> its SSE response;
* ``sse-starlette``: the same fan-out built by hand the usual way - a set of ``asyncio.Queue``, one per
  subscriber, the producer ``put_nowait``-s each event (JSON encoded once) into each, every subscriber an
  ``EventSourceResponse`` over a generator reading its queue (no history, no resume, no bound: less work).

The client (this process, asyncio, raw sockets so that it costs little) opens N subscriptions, then the server
produces events at each rate of ``--rates`` (events/s, each fanned out to N subscribers) for ``--duration``
seconds. Per rate: deliveries/s counted at the client, and the p50/p99 latency from dispatch to the subscriber
reading it (the payload carries the dispatch time; one clock, one host). Memory per idle subscriber: the
server's RSS with N idle subscribers minus before, over N.

Run: ``PYTHONPATH=. python benchmarks/bench_stream.py [--subscribers 500 --rates 10,50,200 --duration 5]``
(needs ``pip install sse-starlette``; ``--serve KIND PORT`` is the server side, used by the script itself).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import Figure, emit, load_note, package_info

KINDS = ("ours", "sse-starlette")
_STAMP = re.compile(rb'"t":(\d+)')


# -- server side ----------------------------------------------------------------------------------------------------


def build_app(kind: str) -> Any:
    from fastapi import FastAPI

    app = FastAPI()
    state: dict[str, Any] = {"rate": 0.0, "task": None}
    queues: set[asyncio.Queue[tuple[str, str]]] = set()

    if kind == "ours":
        from fastapi_events.dispatcher import dispatch
        from fastapi_events.middleware import EventHandlerASGIMiddleware
        from fastapi_events.stream import EventStream

        stream = EventStream()
        app.add_middleware(EventHandlerASGIMiddleware, handlers=[stream], middleware_id=4242)
        app.mount("/events", stream.app)

        def produce(number: int) -> None:
            dispatch("tick", {"t": time.time_ns(), "n": number}, middleware_id=4242)

    else:
        from sse_starlette import EventSourceResponse

        @app.get("/events/")
        async def events() -> EventSourceResponse:
            queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
            queues.add(queue)

            async def messages() -> Any:
                try:
                    while True:
                        event_id, data = await queue.get()
                        yield {"id": event_id, "event": "tick", "data": data}
                finally:
                    queues.discard(queue)

            return EventSourceResponse(messages())

        def produce(number: int) -> None:
            item = (str(number), json.dumps({"t": time.time_ns(), "n": number}, separators=(",", ":")))
            for queue in queues:
                queue.put_nowait(item)

    async def producer() -> None:
        # Ticks of 5 ms; each produces what the rate owes by then, so the rate holds even when a tick runs late.
        loop = asyncio.get_running_loop()
        number = 0
        started = loop.time()
        produced = 0
        while True:
            await asyncio.sleep(0.005)
            due = int((loop.time() - started) * state["rate"])
            while produced < due:
                number += 1
                produced += 1
                produce(number)

    @app.post("/rate/{rate}")
    async def set_rate(rate: float) -> dict[str, float]:
        task = state["task"]
        if task is not None:
            task.cancel()
            state["task"] = None
        state["rate"] = rate
        if rate > 0:
            state["task"] = asyncio.get_running_loop().create_task(producer())
        return {"rate": rate}

    return app


def serve(kind: str, port: int) -> None:
    import uvicorn

    uvicorn.run(build_app(kind), host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- client side ----------------------------------------------------------------------------------------------------


class Subscriber:
    def __init__(self) -> None:
        self.count = 0
        self.latencies: list[float] | None = None
        self.opened = False
        self.closed = False

    async def run(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /events/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        await writer.drain()
        rest = b""
        try:
            while True:
                chunk = await reader.read(1 << 16)
                if not chunk:
                    break
                if not self.opened:
                    self.opened = b" 200 " in chunk
                # sse-starlette ends lines with CRLF, ours with LF: both are valid SSE.
                buffer = rest + chunk.replace(b"\r\n", b"\n")
                end = buffer.rfind(b"\n\n")
                if end < 0:
                    rest = buffer
                    continue
                complete, rest = buffer[: end + 2], buffer[end + 2 :]
                self.count += complete.count(b"\ndata:") + complete.startswith(b"data:")
                if self.latencies is not None:
                    now = time.time_ns()
                    self.latencies.extend((now - int(stamp)) / 1e6 for stamp in _STAMP.findall(complete))
        finally:
            self.closed = True
            writer.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(port: int, path: str) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=300) as response:
        response.read()


def measure(kind: str, subscribers: int, rates: list[float], duration: float) -> dict[str, Any]:
    port = free_port()
    path = [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    server = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port)], env=env)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(1.0)
        return {"kind": kind, **asyncio.run(drive(server.pid, port, subscribers, rates, duration))}
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


async def drive(pid: int, port: int, subscribers: int, rates: list[float], duration: float) -> dict[str, Any]:
    before = rss_kib(pid)
    clients = [Subscriber() for _ in range(subscribers)]
    tasks = [asyncio.create_task(client.run(port)) for client in clients]
    for _ in range(600):
        if all(client.opened for client in clients):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(2.0)
    per_subscriber = (rss_kib(pid) - before) * 1024 / subscribers
    results = []
    for rate in rates:
        await asyncio.to_thread(post, port, f"/rate/{rate}")
        await asyncio.sleep(1.0)  # warm-up at this rate
        for client in clients:
            client.latencies = []
        counted = sum(client.count for client in clients)
        started = time.monotonic()
        await asyncio.sleep(duration)
        elapsed = time.monotonic() - started
        delivered = sum(client.count for client in clients) - counted
        latencies = sorted(value for client in clients for value in client.latencies or ())
        for client in clients:
            client.latencies = None
        await asyncio.to_thread(post, port, "/rate/0")
        await asyncio.sleep(2.0)  # let backlogs drain before the next rate
        results.append(
            {
                "rate": rate,
                "deliveries_per_s": delivered / elapsed,
                "offered_per_s": rate * subscribers,
                "p50_ms": statistics.median(latencies) if latencies else float("nan"),
                "p99_ms": latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
                "dropped": sum(client.closed for client in clients),
            }
        )
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"bytes_per_subscriber": per_subscriber, "rates": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--rates", default="10,50,200", help="events/s, comma-separated")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    rates = [float(rate) for rate in args.rates.split(",")]
    runs = {kind: measure(kind, args.subscribers, rates, args.duration) for kind in KINDS}
    ours, theirs = runs["ours"], runs["sse-starlette"]
    figures = [
        Figure(
            "stream",
            "memory_per_subscriber",
            f"memory per idle subscriber, ours (sse-starlette: {theirs['bytes_per_subscriber'] / 1024:.1f} KiB)",
            ours["bytes_per_subscriber"] / 1024,
            "KiB",
        )
    ]
    for mine, hand in zip(ours["rates"], theirs["rates"], strict=True):
        rate = f"{mine['rate']:g} ev/s x {args.subscribers}"
        # Issue 10's goal, at the highest rate (where the hand-built fan-out no longer keeps up).
        top = mine is ours["rates"][-1]
        figures.append(
            Figure(
                "stream",
                f"deliveries_ratio_{mine['rate']:g}",
                f"deliveries/s ours / sse-starlette at {rate}",
                mine["deliveries_per_s"] / max(hand["deliveries_per_s"], 1e-9),
                "x",
                target=2.0 if top else None,
                target_op=">=" if top else None,
                extra={
                    "ours": f"{mine['deliveries_per_s']:.0f}/s p50 {mine['p50_ms']:.1f}ms p99 {mine['p99_ms']:.1f}ms"
                    f" dropped {mine['dropped']}",
                    "sse-starlette": f"{hand['deliveries_per_s']:.0f}/s p50 {hand['p50_ms']:.1f}ms"
                    f" p99 {hand['p99_ms']:.1f}ms dropped {hand['dropped']}",
                    "offered": f"{mine['offered_per_s']:.0f}/s",
                },
            )
        )
        figures.append(
            Figure(
                "stream",
                f"p99_ratio_{mine['rate']:g}",
                f"p99 latency ours / sse-starlette at {rate}",
                mine["p99_ms"] / max(hand["p99_ms"], 1e-9),
                "x",
                target=1.0 if top else None,
                target_op="<=" if top else None,
            )
        )
    meta = {**package_info(), "load": load_note(), "method": f"{args.subscribers} SSE subscribers, {args.duration}s"}
    emit("Live streams (bench_stream.py)", meta, figures, args.json)


if __name__ == "__main__":
    main()
