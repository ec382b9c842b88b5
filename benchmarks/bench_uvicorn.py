"""End-to-end benchmark: uvicorn + wrk, a route dispatching 10 events, with vs. without the middleware.

Server runs one after the other, each a fresh ``uvicorn`` subprocess (1 worker, httptools + uvloop when
installed, else h11 + asyncio, 127.0.0.1 on a free port, log level warning, no access log):

* ``with``: ``EventHandlerASGIMiddleware(handlers=[local_handler])``; ``GET /events`` dispatches 10 events
  to an async no-op local handler;
* ``without``: the same FastAPI app and route without the middleware; the route calls a no-op function with
  the same signature instead of ``dispatch`` (0.12.2's ``dispatch`` raises ``LookupError`` outside the
  middleware).

Each is loaded with ``wrk -t2 -c20 -d10s`` (after a short warm-up run); by default two pairs of runs in ABBA
order (without, with, with, without). Printed: mean requests/s of both and the ratio with/without.
``GET /stats`` reports how many events were dispatched and handled (none may be dropped). As a cross-check that
other load on the machine cannot skew, the server process's CPU time per request (from /proc) is printed too,
and its ratio without/with.

Run: ``python benchmarks/bench_uvicorn.py [--json]``; needs ``wrk`` (Debian: ``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import Figure, emit, load_note, package_info

EVENTS_PER_REQUEST = 10
RATIO_TARGET = 60.0


# ----------------------------------------------------------------------------------------------------
# server side (runs in the subprocess)


def build_app(with_middleware: bool) -> Any:
    from fastapi import FastAPI
    from starlette.responses import JSONResponse, Response

    from fastapi_events.dispatcher import dispatch
    from fastapi_events.handlers.local import local_handler
    from fastapi_events.middleware import EventHandlerASGIMiddleware

    counts = {"dispatched": 0, "handled": 0}

    def no_dispatch(event_name: str, payload: Any = None) -> None:
        return None

    emit_event = dispatch if with_middleware else no_dispatch

    @local_handler.register(event_name="e2e.*")
    async def on_event(event: Any) -> None:
        counts["handled"] += 1

    app = FastAPI()
    if with_middleware:
        app.add_middleware(EventHandlerASGIMiddleware, handlers=[local_handler])

    @app.get("/events")
    async def events() -> Response:
        for i in range(EVENTS_PER_REQUEST):
            emit_event("e2e.tick", payload={"i": i})
        counts["dispatched"] += EVENTS_PER_REQUEST
        return Response(b"ok", media_type="text/plain")

    @app.get("/stats")
    async def stats() -> JSONResponse:
        return JSONResponse(counts)

    return app


def serve(variant: str, port: int) -> None:
    import importlib.util

    import uvicorn

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    print(json.dumps({"http": http, "loop": loop}), flush=True)
    uvicorn.run(
        build_app(variant == "with"),
        host="127.0.0.1",
        port=port,
        http=http,  # type: ignore[arg-type]
        loop=loop,  # type: ignore[arg-type]
        workers=1,
        log_level="warning",
        access_log=False,
    )


# ----------------------------------------------------------------------------------------------------
# driver side


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, threads: int, connections: int, seconds: float) -> dict[str, float]:
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
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(0) if socket_errors else "",  # type: ignore[dict-item]
    }


def run_server(variant: str, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    port = free_port()
    cmd = [sys.executable, os.path.abspath(__file__), "--serve", variant, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        server_info = json.loads(proc.stdout.readline() or "{}")
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                get_json(f"{base}/stats", timeout=0.5)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn ({variant}) did not come up on port {port}") from None
                time.sleep(0.1)
        if args.warmup > 0:
            wrk(f"{base}/events", args.threads, args.connections, args.warmup)
        before = get_json(f"{base}/stats")
        cpu_before = process_cpu_seconds(proc.pid)
        result = wrk(f"{base}/events", args.threads, args.connections, args.duration)
        cpu = process_cpu_seconds(proc.pid) - cpu_before
        # (the /stats requests below are not counted; the wrk requests dwarf them)
        # handlers may still be running right after the load stops: wait (bounded) until the counts settle
        stats = get_json(f"{base}/stats")
        settle_deadline = time.monotonic() + 10
        while variant == "with" and stats["handled"] < stats["dispatched"] and time.monotonic() < settle_deadline:
            time.sleep(0.05)
            stats = get_json(f"{base}/stats")
        dispatched = stats["dispatched"] - before["dispatched"]
        handled = stats["handled"] - before["handled"]
        log(
            f"{variant:>7}: {result['rps']:.0f} req/s ({result['requests']} requests,"
            f" non-2xx {result['non_2xx']}"
            f"{', ' + str(result['socket_errors']) if result['socket_errors'] else ''}); "
            f"events dispatched {dispatched}, handled {handled}; server {server_info}"
        )
        cpu_us = cpu * 1e6 / max(1, result["requests"])
        return {**result, "dispatched": dispatched, "handled": handled, "server": server_info, "cpu_us": cpu_us}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="one JSON object per figure on stdout")
    parser.add_argument("--duration", type=float, default=10, help="wrk seconds per server run")
    parser.add_argument("--warmup", type=float, default=2, help="wrk warm-up seconds (not counted)")
    parser.add_argument("--pairs", type=int, default=2, help="(without, with) server run pairs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--serve", choices=("with", "without"), help=argparse.SUPPRESS)
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

    # ABBA order (without, with, with, without, ...) so that a drift in machine load affects both alike.
    runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    for i in range(args.pairs):
        for variant in ("without", "with") if i % 2 == 0 else ("with", "without"):
            runs[variant].append(run_server(variant, args, log))
    without_rps = statistics.mean(r["rps"] for r in runs["without"])
    with_rps = statistics.mean(r["rps"] for r in runs["with"])
    ratio = 100.0 * with_rps / without_rps
    without_cpu = statistics.mean(r["cpu_us"] for r in runs["without"])
    with_cpu = statistics.mean(r["cpu_us"] for r in runs["with"])
    cpu_ratio = 100.0 * without_cpu / with_cpu if with_cpu else 0.0
    lost = sum(r["dispatched"] - r["handled"] for r in runs["with"])
    server = runs["with"][0]["server"]

    def detail(variant: str) -> dict[str, Any]:
        return {
            "runs": "/".join(f"{r['rps']:.0f}" for r in runs[variant]),
            "non_2xx": sum(r["non_2xx"] for r in runs[variant]),
        }

    figures = [
        Figure("uvicorn", "rps_without", "req/s without middleware", without_rps, "req/s",
               extra=detail("without")),
        Figure("uvicorn", "rps_with", "req/s with middleware, 10 events", with_rps, "req/s",
               extra={**detail("with"), "events": sum(r["dispatched"] for r in runs["with"]),
                      "handled": sum(r["handled"] for r in runs["with"])}),
        Figure("uvicorn", "rps_ratio_pct", "req/s ratio with/without", ratio, "%", RATIO_TARGET, ">=",
               {"unhandled_events": lost}),
        Figure("uvicorn", "server_cpu_us_without", "server CPU per request without", without_cpu, "us/req",
               extra={"runs": "/".join(f"{r['cpu_us']:.0f}" for r in runs["without"])}),
        Figure("uvicorn", "server_cpu_us_with", "server CPU per request with", with_cpu, "us/req",
               extra={"runs": "/".join(f"{r['cpu_us']:.0f}" for r in runs["with"])}),
        Figure("uvicorn", "cpu_ratio_pct", "CPU-based ratio (cpu without / cpu with)", cpu_ratio, "%",
               extra={"note": "cross-check, robust to other load"}),
    ]  # fmt: skip
    meta: dict[str, Any] = {
        **package_info(),
        "load": load_note(),
        "loop": f"uvicorn 1 worker, --http {server.get('http')} --loop {server.get('loop')}",
        "method": f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s"
        f" after {args.warmup:g}s warm-up;"
        f" {args.pairs} pair(s) of runs in ABBA order, a fresh server each; mean req/s",
    }
    emit("bench_uvicorn (end to end)", meta, figures, args.json)


if __name__ == "__main__":
    main()
