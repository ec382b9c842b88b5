"""What handing a request's events over to the broker before the request returns costs: uvicorn + wrk, a Redis
Streams forwarder (a real ``redis-server`` started here), requests/s as % of the same app without events.

Every configuration is a uvicorn server of its own (1 worker, httptools + uvloop when installed, no access log),
its route dispatching K=10 events to a ``RedisStreamForwardHandler``:

* ``after``:  this checkout as it is: the request returns once Redis acknowledged its events (``XADD`` replies),
  concurrent requests sharing the forwarder's batches;
* ``before``: the same forwarder with the hand-over wait switched off (a subclass whose ``_hand_over`` returns at
  once), i.e. the request returns once its events are in the in-memory queue - the behaviour before the change;
* ``spool``:  ``after`` with ``spool_path=``: the request returns once its events are committed to the spool file;
* baseline: the same FastAPI app whose route dispatches nothing.

A round loads a baseline, the three configurations in random order and a baseline again; a configuration's ratio
in a round is its requests/s over the mean of the two baselines, and ``after / before`` is the direct ratio of
the two runs of the round. After each run the script waits until the forwarder delivered everything it accepted
(none may be lost or left behind); "delivered" req/s count that wait too (``before`` answers requests faster than
it delivers their events: the backlog is part of its bill). Printed: medians over rounds (min-max).

Run: ``python benchmarks/bench_handover.py [--rounds 3 --duration 4 --connections 64]``; needs ``wrk`` and
``redis-server``. ``--serve`` is the server side (used by the script itself).
"""

# No ``from __future__ import annotations``: FastAPI must see the endpoints' parameter types.
import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_uvicorn import free_port, get_json, process_cpu_seconds, stop_process, wait_answering, wrk

CONFIGS = ("before", "after", "spool")
EVENTS_PER_REQUEST = 10


def build_app(config: str, redis_url: str, spool_dir: str) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response

    from fastapi_events.dispatcher import dispatch
    from fastapi_events.handlers.redis import RedisStreamForwardHandler
    from fastapi_events.middleware import EventHandlerASGIMiddleware

    class WithoutHandover(RedisStreamForwardHandler):
        async def _hand_over(self, handed: Any, ids: list[str]) -> None:
            self._handovers.forget(ids)

    app = FastAPI()
    forwarder: Any = None
    if config != "none":
        cls = WithoutHandover if config == "before" else RedisStreamForwardHandler
        spool = str(Path(spool_dir) / "spool.db") if config == "spool" else None
        forwarder = cls(f"bench-{config}", redis_url, spool_path=spool, max_queue_size=1_000_000)
        app.add_middleware(EventHandlerASGIMiddleware, handlers=[forwarder])

    @app.get("/events")
    async def produce() -> Response:
        if forwarder is not None:
            for n in range(EVENTS_PER_REQUEST):
                dispatch("bench.forwarded", payload={"n": n, "user": "u-1"})
        return Response(b"ok")

    @app.get("/stats")
    async def stats() -> JSONResponse:
        if forwarder is None:
            return JSONResponse({"accepted": 0, "delivered": 0, "queued": 0})
        s = forwarder.stats
        return JSONResponse({"accepted": s.accepted, "delivered": s.delivered, "queued": s.queued})

    return app


def serve(config: str, port: int, redis_url: str, spool_dir: str) -> None:
    import importlib.util

    import uvicorn

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    app = build_app(config, redis_url, spool_dir)
    uvicorn.run(app, host="127.0.0.1", port=port, http=http, loop=loop, log_level="warning", access_log=False)  # type: ignore[arg-type]


class Server:
    def __init__(self, config: str, redis_url: str, spool_dir: str) -> None:
        self.config = config
        self.port = free_port()
        cmd = [sys.executable, __file__, "--serve", config, "--port", str(self.port), "--redis", redis_url]
        self.proc = subprocess.Popen([*cmd, "--spool-dir", spool_dir], cwd=Path(__file__).parent)
        wait_answering(self.proc, f"http://127.0.0.1:{self.port}/stats", f"uvicorn ({config})")

    def stats(self) -> dict[str, int]:
        # Generous: a server working off a backlog answers late.
        result: dict[str, int] = get_json(f"http://127.0.0.1:{self.port}/stats", timeout=30.0)
        return result

    def load(self, args: argparse.Namespace) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/events"
        wrk(url, args.threads, args.connections, 1.0)  # warm-up: client, connections, first spool pages
        cpu_before = process_cpu_seconds(self.proc.pid)
        result = wrk(url, args.threads, args.connections, args.duration)
        result["cpu_us"] = (process_cpu_seconds(self.proc.pid) - cpu_before) * 1e6 / max(1, result["requests"])
        if result["errors"][0]:
            raise RuntimeError(f"{self.config}: {result['errors'][0]} non-2xx responses")
        ended = time.monotonic()
        stats = self.stats()
        while stats["queued"] or stats["delivered"] < stats["accepted"]:
            if time.monotonic() > ended + 120:
                raise RuntimeError(f"{self.config}: events left behind: {stats}")
            time.sleep(0.02)
            stats = self.stats()
        # Requests whose events have reached Redis, per second: "before" answers faster than it delivers, and the
        # backlog it leaves is part of the bill.
        result["delivered_rps"] = result["requests"] / (args.duration + time.monotonic() - ended)
        return result

    def stop(self) -> None:
        stop_process(self.proc)


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found (Debian: apt-get install -y redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return proc, f"redis://127.0.0.1:{port}/0"


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} % ({min(values):.1f}-{max(values):.1f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--spool-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.redis, args.spool_dir)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found (Debian: apt-get install -y wrk)")
    redis_proc, redis_url = start_redis()
    spool_dir = tempfile.mkdtemp(prefix="bench-handover-")
    servers: dict[str, Server] = {}
    found: dict[str, list[float]] = {name: [] for name in (*CONFIGS, "after/before")}
    delivered: dict[str, list[float]] = {name: [] for name in (*CONFIGS, "after/before")}
    rng = random.Random(1)
    try:
        for config in ("none", *CONFIGS):
            servers[config] = Server(config, redis_url, spool_dir)
        for round_no in range(args.rounds):
            order = list(CONFIGS)
            rng.shuffle(order)
            first = servers["none"].load(args)
            runs = {config: servers[config].load(args) for config in order}
            last = servers["none"].load(args)
            baseline = statistics.mean([first["rps"], last["rps"]])
            for config, result in runs.items():
                found[config].append(100.0 * result["rps"] / baseline)
                delivered[config].append(100.0 * result["delivered_rps"] / baseline)
            found["after/before"].append(100.0 * runs["after"]["rps"] / runs["before"]["rps"])
            delivered["after/before"].append(100.0 * runs["after"]["delivered_rps"] / runs["before"]["delivered_rps"])
            print(
                f"round {round_no + 1}: baseline {baseline:.0f} req/s; "
                + ", ".join(
                    f"{c} {r['rps']:.0f} req/s, {r['delivered_rps']:.0f} delivered/s ({r['cpu_us']:.0f} µs CPU/req)"
                    for c, r in runs.items()
                ),
                file=sys.stderr,
            )
    finally:
        for server in servers.values():
            server.stop()
        redis_proc.terminate()
        redis_proc.wait()
        shutil.rmtree(spool_dir, ignore_errors=True)
    if args.json:
        print(json.dumps({"answered": found, "delivered": delivered}))
        return
    print(f"\nuvicorn + wrk -c{args.connections}, K={EVENTS_PER_REQUEST} events/request to a Redis Streams forwarder,")
    print("requests/s as % of the same app dispatching nothing (median over rounds, min-max); 'delivered' counts")
    print("the time until the last event reached Redis:\n")
    print("| configuration | answered req/s, % of no events | delivered req/s, % of no events |")
    print("|---|---|---|")
    titles = {
        "before": "returns once queued in memory (before)",
        "after": "returns once Redis acknowledged (after)",
        "spool": "returns once in the spool (`spool_path`)",
        "after/before": "after / before, same round",
    }
    for name, values in found.items():
        print(f"| {titles[name]} | {spread(values)} | {spread(delivered[name])} |")


if __name__ == "__main__":
    main()
