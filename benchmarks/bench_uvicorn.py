"""End to end: uvicorn + wrk, requests/s of routes handing K events to a no-op handler, as % of no events at all.

Every cell of the table is a uvicorn server of its own (1 worker, httptools + uvloop when installed, 127.0.0.1 on
a free port, no access log), all started up front and idle unless ``wrk`` loads them:

* rows: FastAPI with K=1 async / sync / async-with-one-sync-``Depends`` handler, K=10 sync and K=10 async; a bare
  Starlette app with K=10 async;
* columns: ``ours`` (this checkout: ``EventHandlerASGIMiddleware`` + ``LocalHandler``, ``dispatch`` K times),
  ``0.12.2`` (the same code under ``benchmarks/.venv-old``) and ``bg`` (no events package: the route adds the
  same handler K times to the framework's ``BackgroundTasks``; the ``Depends`` row resolves the sync dependency
  with ``run_in_threadpool`` first, as a background task has to);
* baseline: the same framework's app whose route returns the same response and dispatches nothing.

A round loads every cell once in random order, with a baseline run of the same framework before, between every
few cells and after; a cell's ratio in a round is its requests/s over the mean of the baseline runs next to it.
Printed: the median ratio over rounds (with min-max), and as a cross-check that other load on the machine cannot
skew, the ratio of server CPU time per request (``/proc``: baseline CPU / cell CPU). After each run the script
waits for the server's handled-event count to catch up (none may be lost).

Run: ``python benchmarks/bench_uvicorn.py [--rounds 3 --duration 4]``; needs ``wrk`` (Debian: ``apt-get install
-y wrk``). ``--serve`` is the server side (used by the script itself).
"""

# No ``from __future__ import annotations``: FastAPI must see the endpoints' parameter types, imported locally.
import argparse
import itertools
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _venvs
from _common import Figure, emit, load_note

# row key -> (label, framework, handler kind, events per request)
ROWS: dict[str, tuple[str, str, str, int]] = {
    "fastapi-async1": ("FastAPI, K=1, async", "fastapi", "async", 1),
    "fastapi-sync1": ("FastAPI, K=1, sync", "fastapi", "sync", 1),
    "fastapi-dep1": ("FastAPI, K=1, async with one sync `Depends`", "fastapi", "dep", 1),
    "fastapi-sync10": ("FastAPI, K=10, sync", "fastapi", "sync", 10),
    "fastapi-async10": ("FastAPI, K=10, async", "fastapi", "async", 10),
    "starlette-async10": ("Starlette, K=10, async", "starlette", "async", 10),
}
COLUMNS = ("ours", _venvs.OLD_VERSION, "bg")
COLUMN_TITLES = {"ours": "ours", _venvs.OLD_VERSION: f"fastapi-events {_venvs.OLD_VERSION}", "bg": "BackgroundTasks"}
# issue 12's goals for ours, % of the no-event requests/s
TARGETS = {"fastapi-async1": 95.0, "fastapi-sync1": 85.0, "fastapi-dep1": 85.0, "fastapi-sync10": 80.0,
           "starlette-async10": 70.0}  # fmt: skip
BASELINE_EVERY = 3  # cells between two baseline runs

# ----------------------------------------------------------------------------------------------------
# server side (runs in the subprocess)


def build_app(framework: str, column: str, kind: str, k: int) -> Any:
    from starlette.applications import Starlette
    from starlette.background import BackgroundTasks
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    dispatched = [0]
    handled = itertools.count()  # next() is atomic: sync handlers count from threads

    def sync_dependency() -> int:
        return 1

    async def on_async(event: Any) -> None:
        next(handled)

    def on_sync(event: Any) -> None:
        next(handled)

    async def on_dep_task(payload: Any) -> None:
        await run_in_threadpool(sync_dependency)
        next(handled)

    def ok() -> Response:
        return Response(b"ok", media_type="text/plain")

    async def stats() -> JSONResponse:
        return JSONResponse({"dispatched": dispatched[0], "handled": handled.__reduce__()[1][0]})

    middleware: list[Any] = []
    task = {"async": on_async, "sync": on_sync, "dep": on_dep_task}[kind]
    if column == "none":

        async def produce() -> Response:
            return ok()

    elif column == "bg":

        async def produce() -> Response:
            tasks = BackgroundTasks()
            for i in range(k):
                tasks.add_task(task, {"i": i})
            dispatched[0] += k
            response = ok()
            response.background = tasks
            return response

    else:
        from starlette.middleware import Middleware

        from fastapi_events.dispatcher import dispatch
        from fastapi_events.handlers.local import LocalHandler
        from fastapi_events.middleware import EventHandlerASGIMiddleware

        handler = LocalHandler()
        if kind == "dep":
            from fastapi import Depends

            async def on_dep(event: Any, value: int = Depends(sync_dependency)) -> None:
                next(handled)

            handler.register(on_dep, event_name="e2e.tick")
        else:
            handler.register({"async": on_async, "sync": on_sync}[kind], event_name="e2e.tick")
        middleware.append(Middleware(EventHandlerASGIMiddleware, handlers=[handler]))

        async def produce() -> Response:
            for i in range(k):
                dispatch("e2e.tick", payload={"i": i})
            dispatched[0] += k
            return ok()

    if framework == "starlette":

        async def endpoint(request: Request) -> Response:
            return await produce()

        async def stats_endpoint(request: Request) -> Response:
            return await stats()

        routes = [Route("/events", endpoint), Route("/stats", stats_endpoint)]
        return Starlette(routes=routes, middleware=middleware)
    from fastapi import BackgroundTasks as FastAPIBackgroundTasks
    from fastapi import FastAPI

    app = FastAPI(middleware=middleware)
    app.get("/stats")(stats)
    if column == "bg":
        # FastAPI's own way: a BackgroundTasks parameter, run after the response.
        @app.get("/events")
        async def fastapi_bg(background_tasks: FastAPIBackgroundTasks) -> Response:
            for i in range(k):
                background_tasks.add_task(task, {"i": i})
            dispatched[0] += k
            return ok()

    else:
        app.get("/events")(produce)
    return app


def serve(spec: str, port: int) -> None:
    import importlib.util

    import uvicorn

    framework, column, kind, k = spec.split(":")
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    print(json.dumps({"http": http, "loop": loop}), flush=True)
    app = build_app(framework, column, kind, int(k))
    uvicorn.run(app, host="127.0.0.1", port=port, http=http, loop=loop, log_level="warning", access_log=False)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------
# driver side


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM (the server's graceful shutdown), SIGKILL when it does not end within 15 s."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_answering(proc: subprocess.Popen[Any], url: str, what: str, timeout: float = 60.0) -> None:
    """Block until the server started as ``proc`` answers ``url`` (JSON); RuntimeError when it died or timed out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            get_json(url, timeout=30.0)
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not come up") from None
            time.sleep(0.1)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, threads: int, connections: int, seconds: float) -> dict[str, Any]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", url]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not rps or not total:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)),
        "errors": (int(errors.group(1)) if errors else 0, socket_errors.group(0) if socket_errors else ""),
    }


@dataclass
class Server:
    key: str  # row key, or "baseline-<framework>"
    column: str  # "ours" | "0.12.2" | "bg" | "none"
    spec: str
    interp: _venvs.Interpreter
    port: int = 0
    proc: subprocess.Popen[str] | None = None
    info: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        script = str(Path(__file__).resolve())
        cmd = [self.interp.python, script, "--serve", self.spec, "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=self.interp.env, cwd=_venvs.BENCH_DIR)

    def wait_up(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        self.info = json.loads(self.proc.stdout.readline() or "{}")
        deadline = time.monotonic() + 60
        while True:
            try:
                get_json(f"{self.base}/stats", timeout=0.5)
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn {self.spec} ({self.interp.label}) did not come up") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def load(self, args: argparse.Namespace) -> dict[str, Any]:
        assert self.proc is not None
        if args.warmup > 0:
            wrk(f"{self.base}/events", args.threads, args.connections, args.warmup)
        before = self.settled()
        cpu_before = process_cpu_seconds(self.proc.pid)
        result = wrk(f"{self.base}/events", args.threads, args.connections, args.duration)
        cpu = process_cpu_seconds(self.proc.pid) - cpu_before
        after = self.settled()
        if result["errors"][0]:
            raise RuntimeError(f"{self.spec} ({self.interp.label}): {result['errors'][0]} non-2xx responses")
        result["cpu_us"] = cpu * 1e6 / max(1, result["requests"])
        result["unhandled"] = (after["dispatched"] - after["handled"]) - (before["dispatched"] - before["handled"])
        return result

    def settled(self) -> dict[str, int]:
        """/stats once the handlers caught up with what was dispatched (bounded: 10 s)."""
        deadline = time.monotonic() + 10
        stats: dict[str, int] = get_json(f"{self.base}/stats")
        while stats["handled"] < stats["dispatched"] and time.monotonic() < deadline:
            time.sleep(0.05)
            stats = get_json(f"{self.base}/stats")
        return stats


def make_servers(columns: tuple[str, ...], rows: list[str]) -> list[Server]:
    ours = _venvs.ours()
    interps = {"ours": ours, "bg": ours, "none": ours}
    if _venvs.OLD_VERSION in columns:
        interps[_venvs.OLD_VERSION] = _venvs.ensure_old_venv(quiet=True)
    servers = []
    for framework in sorted({ROWS[row][1] for row in rows}):
        servers.append(Server(f"baseline-{framework}", "none", f"{framework}:none:async:0", ours))
    for row in rows:
        _, framework, kind, k = ROWS[row]
        for column in columns:
            servers.append(Server(row, column, f"{framework}:{column}:{kind}:{k}", interps[column]))
    return servers


def round_order(servers: list[Server], rng: random.Random) -> list[Server]:
    """Per framework: baseline, a few cells in random order, baseline, ..., baseline."""
    order: list[Server] = []
    for baseline in (s for s in servers if s.column == "none"):
        framework = baseline.key.removeprefix("baseline-")
        cells = [s for s in servers if s.column != "none" and ROWS[s.key][1] == framework]
        rng.shuffle(cells)
        order.append(baseline)
        for i in range(0, len(cells), BASELINE_EVERY):
            order.extend(cells[i : i + BASELINE_EVERY])
            order.append(baseline)
    return order


def ratios(runs: list[tuple[Server, dict[str, Any]]]) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """(row, column) -> per round (requests/s %, CPU-based %) against the adjacent baseline runs."""
    out: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for i, (server, result) in enumerate(runs):
        if server.column == "none":
            continue
        framework = ROWS[server.key][1]
        near = []
        for step in (-1, 1):
            j = i + step
            while 0 <= j < len(runs) and runs[j][0].key != f"baseline-{framework}":
                j += step
            if 0 <= j < len(runs):
                near.append(runs[j][1])
        rps = statistics.mean(r["rps"] for r in near)
        cpu = statistics.mean(r["cpu_us"] for r in near)
        out.setdefault((server.key, server.column), []).append(
            (100.0 * result["rps"] / rps, 100.0 * cpu / result["cpu_us"] if result["cpu_us"] else 0.0)
        )
    return out


def markdown(found: dict[tuple[str, str], list[tuple[float, float]]], rows: list[str], columns: tuple[str, ...]) -> str:
    def cell(values: list[tuple[float, float]] | None) -> str:
        if not values:
            return "n/a"
        rps = [v[0] for v in values]
        cpu = statistics.median(v[1] for v in values)
        return f"{statistics.median(rps):.0f} % ({min(rps):.0f}-{max(rps):.0f}; CPU {cpu:.0f} %)"

    lines = [
        "| K, handler | " + " | ".join(COLUMN_TITLES[c] for c in columns) + " | goal (ours) |",
        "| --- | " + " | ".join("---:" for _ in columns) + " | ---: |",
    ]
    for row in rows:
        goal = f"≥ {TARGETS[row]:.0f} %" if row in TARGETS else ""
        cells = " | ".join(cell(found.get((row, c))) for c in columns)
        lines.append(f"| {ROWS[row][0]} | {cells} | {goal} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="one JSON object per figure on stdout")
    parser.add_argument("--duration", type=int, default=4, help="wrk seconds per run")
    parser.add_argument("--warmup", type=int, default=1, help="wrk warm-up seconds before each run (0: none)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated row keys")
    parser.add_argument("--columns", default=",".join(COLUMNS), help="comma-separated: ours,0.12.2,bg")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.serve:
        serve(args.serve, args.port)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("bench_uvicorn: `wrk` not found on PATH. Install it (Debian/Ubuntu: apt-get install -y wrk).")

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"[bench_uvicorn] {msg}", file=sys.stderr, flush=True)

    rows = [row for row in args.rows.split(",") if row]
    columns = tuple(c for c in COLUMNS if c in args.columns.split(","))
    servers = make_servers(columns, rows)
    rng = random.Random(args.seed)
    runs: list[tuple[Server, dict[str, Any]]] = []
    started = time.monotonic()
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_up()
        log(f"{len(servers)} servers up in {time.monotonic() - started:.0f}s")
        for rnd in range(args.rounds):
            for server in round_order(servers, rng):
                result = server.load(args)
                runs.append((server, result))
                log(
                    f"round {rnd + 1}: {server.key:<18} {server.column:<7} {result['rps']:7.0f} req/s "
                    f"{result['cpu_us']:5.0f} µs CPU/req, unhandled {result['unhandled']}, errors {result['errors']}"
                )
    finally:
        for server in servers:
            server.stop()

    found = ratios(runs)
    lost = sum(r["unhandled"] for _, r in runs)
    errors = sum(r["errors"][0] for _, r in runs)
    server_info = servers[0].info
    meta: dict[str, Any] = {
        "version": "ours (checkout)",
        "location": str(_venvs.REPO_ROOT),
        "stack": f"uvicorn 1 worker, --http {server_info.get('http')} --loop {server_info.get('loop')}",
        "load": load_note(),
        "method": f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s after {args.warmup:g}s warm-up, "
        f"{args.rounds} rounds, median ratio against adjacent baseline runs; unhandled events {lost}, "
        f"non-2xx {errors}",
    }
    if args.json:
        figures = [
            Figure("uvicorn", f"{row}_{column}_pct", f"{ROWS[row][0]}, {column}",
                   statistics.median(v[0] for v in values), "%",
                   TARGETS.get(row) if column == "ours" else None, ">=" if column == "ours" else None,
                   {"rounds": [round(v[0], 1) for v in values], "cpu_pct": [round(v[1], 1) for v in values]})
            for (row, column), values in found.items()
        ]  # fmt: skip
        emit("bench_uvicorn (end to end)", meta, figures, True)
        return
    baselines = {s.key: [r["rps"] for srv, r in runs if srv is s] for s in servers if s.column == "none"}
    print(markdown(found, rows, columns))
    print()
    print(f"{meta['stack']}; {meta['method']}; load {meta['load']}.")
    for key, values in baselines.items():
        print(f"- {key}: {statistics.median(values):.0f} req/s (runs {', '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    main()
