"""In-process ASGI benchmark of the core: middleware overhead and per-event cost of local handlers.

The FastAPI apps are driven through their ASGI ``__call__`` with hand-built HTTP scope / receive / send
(no httpx, no server); each app's lifespan is started first and shut down at the end, as a server would.
Every figure is a difference against a baseline measured in the same run, interleaved round by round:

* middleware overhead = (app + ``EventHandlerASGIMiddleware(handlers=[local_handler])``) - (same app
  without it), same route, nothing dispatched;
* per-event cost = (t(route dispatching K events) - t(same route dispatching 0 events)) / K, on the same
  middleware app, for an async no-op handler, a sync no-op handler and an async handler with one ``Depends``.

Handlers may run after the response (background work), so a batch of requests only ends when every handler
call has happened: handlers append to a list and the batch waits until the list holds the expected number of
calls; that wait is part of the measured time. The same code runs against ours and fastapi-events 0.12.2
(same public API).

Run: ``python benchmarks/bench_core.py [--json]``; ``python benchmarks/run_all.py`` runs it for both packages.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import random
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from _common import Figure, emit, load_note, median, package_info, spread
from fastapi import Depends, FastAPI
from starlette.responses import Response

from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.local import LocalHandler, local_handler
from fastapi_events.middleware import EventHandlerASGIMiddleware

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

TARGETS_US = {"overhead": 1.5, "async": 3.0, "sync": 8.0, "dep": 5.0}
MEMORY_TARGET_KIB = 64.0
KINDS = ("async", "sync", "dep")
KS = (1, 10)
OK_BODY = b"ok"

# ----------------------------------------------------------------------------------------------------
# handlers: one LocalHandler per kind, so each event is matched against exactly one registered handler


class Hits:
    """Counts handler calls (``list.append`` is atomic: sync handlers running in threads count correctly)."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls: list[None] = []

    def __len__(self) -> int:
        return len(self.calls)

    def clear(self) -> None:
        self.calls.clear()


HITS: dict[str, Hits] = {kind: Hits() for kind in (*KINDS, "mem")}
HANDLERS: dict[str, LocalHandler] = {kind: LocalHandler() for kind in (*KINDS, "mem")}


async def constant_dependency() -> int:
    return 1


def _register_handlers() -> None:
    async_hits, sync_hits, dep_hits, mem_hits = (HITS[k].calls for k in (*KINDS, "mem"))

    @HANDLERS["async"].register(event_name="bench.async")
    async def on_async(event: Any) -> None:
        async_hits.append(None)

    @HANDLERS["sync"].register(event_name="bench.sync")
    def on_sync(event: Any) -> None:
        sync_hits.append(None)

    @HANDLERS["dep"].register(event_name="bench.dep")
    async def on_dep(event: Any, value: int = Depends(constant_dependency)) -> None:
        dep_hits.append(None)

    # memory check: one of each kind plus a failing handler (dispatched last: 0.12.2 stops at a failure)
    mem = HANDLERS["mem"]

    @mem.register(event_name="mem.async")
    async def mem_async(event: Any) -> None:
        mem_hits.append(None)

    @mem.register(event_name="mem.sync")
    def mem_sync(event: Any) -> None:
        mem_hits.append(None)

    @mem.register(event_name="mem.dep")
    async def mem_dep(event: Any, value: int = Depends(constant_dependency)) -> None:
        mem_hits.append(None)

    @mem.register(event_name="mem.fail")
    async def mem_fail(event: Any) -> None:
        mem_hits.append(None)
        raise RuntimeError("benchmark: handler failure")


MEM_EVENTS = ("mem.async", "mem.sync", "mem.dep", "mem.fail")

# ----------------------------------------------------------------------------------------------------
# apps


def _fastapi() -> FastAPI:
    return FastAPI()


def _add_dispatch_route(app: FastAPI, path: str, event_name: str, k: int) -> None:
    # Identical code for every K (K=0 included) so that t_K - t_0 is only the dispatch + handling work.
    async def endpoint() -> Response:
        for i in range(k):
            dispatch(event_name, payload={"i": i})
        return Response(OK_BODY, media_type="text/plain")

    app.add_api_route(path, endpoint, methods=["GET"])


def build_apps() -> dict[str, FastAPI]:
    apps: dict[str, FastAPI] = {}
    plain = _fastapi()
    _add_dispatch_route(plain, "/0", "unused", 0)
    apps["plain"] = plain

    mw = _fastapi()
    mw.add_middleware(EventHandlerASGIMiddleware, handlers=[local_handler])
    _add_dispatch_route(mw, "/0", "unused", 0)
    apps["mw"] = mw

    for kind in KINDS:
        app = _fastapi()
        app.add_middleware(EventHandlerASGIMiddleware, handlers=[HANDLERS[kind]])
        for k in (0, *KS):
            _add_dispatch_route(app, f"/{k}", f"bench.{kind}", k)
        apps[kind] = app

    mem_app = _fastapi()
    mem_app.add_middleware(EventHandlerASGIMiddleware, handlers=[HANDLERS["mem"]])

    async def mem_endpoint() -> Response:
        for name in MEM_EVENTS:
            dispatch(name, payload={"user": 1, "tags": ["a", "b"]})
        return Response(OK_BODY, media_type="text/plain")

    mem_app.add_api_route("/mem", mem_endpoint, methods=["GET"])
    apps["mem"] = mem_app
    return apps


# ----------------------------------------------------------------------------------------------------
# a minimal ASGI "server": lifespan + one HTTP request at a time

HEADERS = [(b"host", b"bench.local"), (b"user-agent", b"bench-core"), (b"accept", b"*/*")]
REQUEST_MESSAGE: Message = {"type": "http.request", "body": b"", "more_body": False}


async def http_call(app: ASGIApp, path: str, state: dict[str, Any]) -> int:
    """One GET request; receive() blocks after the body until the response is complete, then reports a
    disconnect (like uvicorn). Returns the response status."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": HEADERS,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": state.copy(),
    }
    body_read = False
    finished = False
    status = 0
    done: asyncio.Event | None = None

    async def receive() -> Message:
        nonlocal body_read, done
        if not body_read:
            body_read = True
            return dict(REQUEST_MESSAGE)
        if not finished:
            if done is None:
                done = asyncio.Event()
            await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal finished, status
        kind = message["type"]
        if kind == "http.response.start":
            status = message["status"]
        elif kind == "http.response.body" and not message.get("more_body", False):
            finished = True
            if done is not None:
                done.set()

    await app(scope, receive, send)
    return status


@dataclass
class Lifespan:
    app: ASGIApp
    state: dict[str, Any] = field(default_factory=dict)
    _inbox: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    _task: asyncio.Task[None] | None = None
    _startup: asyncio.Future[Message] | None = None
    _shutdown: asyncio.Future[Message] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._startup, self._shutdown = loop.create_future(), loop.create_future()

        async def receive() -> Message:
            return await self._inbox.get()

        async def send(message: Message) -> None:
            target = self._startup if message["type"].startswith("lifespan.startup") else self._shutdown
            if target is not None and not target.done():
                target.set_result(message)

        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        self._task = asyncio.create_task(self.app(scope, receive, send))  # type: ignore[arg-type]
        await self._inbox.put({"type": "lifespan.startup"})
        done, _ = await asyncio.wait({self._startup, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._startup not in done or self._startup.result()["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"lifespan startup failed: {self._startup.result() if self._startup.done() else ''}")

    async def stop(self) -> None:
        assert self._task is not None
        assert self._shutdown is not None
        await self._inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait({self._shutdown, self._task}, timeout=30)
        if not self._task.done():
            self._task.cancel()


async def wait_for_hits(hits: Hits, expected: int, timeout: float = 120.0) -> None:
    """Let the loop run until ``expected`` handler calls happened (spin first, then short sleeps so that
    handlers running in worker threads get the GIL)."""
    spins = 0
    deadline = time.perf_counter() + timeout
    while len(hits) < expected:
        spins += 1
        await asyncio.sleep(0 if spins < 200 else 0.0002)
        if spins % 1000 == 0 and time.perf_counter() > deadline:
            raise TimeoutError(f"only {len(hits)} of {expected} handler calls happened within {timeout}s")


# ----------------------------------------------------------------------------------------------------
# measurement


@dataclass(frozen=True)
class Config:
    app: str
    k: int  # events dispatched per request

    @property
    def path(self) -> str:
        return f"/{self.k}"

    @property
    def name(self) -> str:
        return f"{self.app}/{self.k}"


GROUPS: list[list[Config]] = [
    [Config("plain", 0), Config("mw", 0)],
    *[[Config(kind, k) for k in (0, *KS)] for kind in KINDS],
]


async def run_batch(
    app: ASGIApp, cfg: Config, n: int, state: dict[str, Any], gc_off: bool, concurrency: int = 1
) -> tuple[float, float]:
    """(wall, process CPU) seconds for ``n`` requests plus the wait until all their handler calls happened; with
    ``concurrency`` > 1 the requests are that many streams of sequential requests running side by side."""
    hits = HITS.get(cfg.app)
    if hits is not None:
        hits.clear()
    expected = n * cfg.k
    if gc_off:
        gc.disable()
    try:
        start, start_cpu = time.perf_counter(), time.process_time()
        if concurrency == 1:
            await _requests(app, cfg, n, state)
        else:
            await asyncio.gather(
                *(_requests(app, cfg, n // concurrency + (i < n % concurrency), state) for i in range(concurrency))
            )
        if hits is not None and expected:
            await wait_for_hits(hits, expected)
        elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    finally:
        if gc_off:
            gc.enable()
    if hits is not None and len(hits) != expected:
        raise RuntimeError(f"{cfg.name}: {len(hits)} handler calls, expected {expected}")
    return elapsed, elapsed_cpu


async def _requests(app: ASGIApp, cfg: Config, n: int, state: dict[str, Any]) -> None:
    for _ in range(n):
        status = await http_call(app, cfg.path, state)
        if status != 200:
            raise RuntimeError(f"{cfg.name}: HTTP {status}")


Samples = dict[str, dict[str, list[float]]]  # clock ("wall" / "cpu") -> config name -> us per request


async def measure(
    apps: dict[str, FastAPI],
    states: dict[str, dict[str, Any]],
    rounds: int,
    round_seconds: float,
    gc_off: bool,
    seed: int,
    log: Callable[[str], None],
    concurrency: int = 1,
) -> tuple[Samples, dict[str, int]]:
    configs = [cfg for group in GROUPS for cfg in group]
    # warm-up + calibration: enough requests per batch for ~round_seconds each
    sizes: dict[str, int] = {}
    for cfg in configs:
        gc.collect()
        await run_batch(apps[cfg.app], cfg, 50, states[cfg.app], gc_off, concurrency)
        per_request = (await run_batch(apps[cfg.app], cfg, 200, states[cfg.app], gc_off, concurrency))[0] / 200
        sizes[cfg.name] = max(10, min(200_000, int(round_seconds / per_request)))
    log("calibrated: " + ", ".join(f"{k}={v}" for k, v in sizes.items()))
    samples: Samples = {clock: {cfg.name: [] for cfg in configs} for clock in ("wall", "cpu")}
    rng = random.Random(seed)
    for r in range(rounds):
        groups = [list(g) for g in GROUPS]
        rng.shuffle(groups)
        for group in groups:
            rng.shuffle(group)  # members of a group (the configs that get subtracted) run back to back
            gc.collect()  # every group starts from the same heap state
            for cfg in group:
                n = sizes[cfg.name]
                wall, cpu = await run_batch(apps[cfg.app], cfg, n, states[cfg.app], gc_off, concurrency)
                samples["wall"][cfg.name].append(wall / n * 1e6)
                samples["cpu"][cfg.name].append(cpu / n * 1e6)
        if (r + 1) % 20 == 0 or r + 1 == rounds:
            log(f"round {r + 1}/{rounds} done")
    return samples, sizes


async def memory_check(
    app: FastAPI, state: dict[str, Any], n_requests: int, log: Callable[[str], None]
) -> tuple[float, dict[str, Any]]:
    """tracemalloc net growth (KiB) between request n/2 and n of a route dispatching one event to an async, a
    sync, a Depends and a failing handler. No retention means ~0."""
    hits = HITS["mem"]
    per_request = len(MEM_EVENTS)
    raised = 0

    async def batch(n: int) -> None:
        nonlocal raised
        hits.clear()
        for _ in range(n):
            try:
                await http_call(app, "/mem", state)
            except Exception:  # 0.12.2 lets handler exceptions escape into the server
                raised += 1
        await wait_for_hits(hits, n * per_request)
        for _ in range(50):  # let failure reporting / task clean-up that follows the last call finish
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        hits.clear()
        gc.collect()

    tasks_before = len(asyncio.all_tasks())
    logging.disable(logging.CRITICAL)  # failures are logged per event; we measure retention, not logging
    try:
        await batch(1000)
        half = n_requests // 2
        tracemalloc.start()
        await batch(half)
        first, _ = tracemalloc.get_traced_memory()
        await batch(n_requests - half)
        second, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        logging.disable(logging.NOTSET)
    growth = (second - first) / 1024
    tasks = len(asyncio.all_tasks()) - tasks_before
    log(f"memory: {first} -> {second} bytes traced, peak {peak}, {tasks} tasks left over")
    extra = {
        "requests": n_requests,
        "bytes_per_request": round((second - first) / max(1, n_requests - half), 2),
        "tasks_left": tasks,
        "app_raised": raised,
    }
    return growth, extra


def _per_event(samples: dict[str, list[float]], kind: str, k: int) -> list[float]:
    return [(a - b) / k for a, b in zip(samples[f"{kind}/{k}"], samples[f"{kind}/0"], strict=True)]


def _overhead(samples: dict[str, list[float]]) -> list[float]:
    return [a - b for a, b in zip(samples["mw/0"], samples["plain/0"], strict=True)]


def build_figures(all_samples: Samples, sizes: dict[str, int], clock: str, concurrency: int = 1) -> list[Figure]:
    """Figures from the ``clock`` samples; ``other`` = the median by the other clock, for comparison."""
    samples = all_samples[clock]
    other_clock = "wall" if clock == "cpu" else "cpu"
    others = all_samples[other_clock]
    other = f"{other_clock}_median"
    figures: list[Figure] = []
    plain, mw = samples["plain/0"], samples["mw/0"]
    overhead = _overhead(samples)
    figures.append(
        Figure("core", "baseline_us", "request without middleware", median(plain), "us/req",
               extra={"iqr": spread(plain), other: round(median(others["plain/0"]), 2),
                      "n": sizes["plain/0"]})
    )  # fmt: skip
    figures.append(
        Figure("core", "with_middleware_us", "request with middleware", median(mw), "us/req",
               extra={"iqr": spread(mw), other: round(median(others["mw/0"]), 2), "n": sizes["mw/0"]})
    )  # fmt: skip
    figures.append(
        Figure("core", "overhead_us", "middleware overhead", median(overhead), "us/req",
               TARGETS_US["overhead"], "<=",
               {"iqr": spread(overhead), "of_minima": round(min(mw) - min(plain), 2),
                other: round(median(_overhead(others)), 2)})
    )  # fmt: skip
    titles = {
        "async": "async no-op handler",
        "sync": "sync no-op handler",
        "dep": "async handler + 1 Depends",
    }
    # Concurrent runs get keys of their own: "sync_event_us_k1_c20".
    suffix, label = (f"_c{concurrency}", f", {concurrency} concurrent") if concurrency > 1 else ("", "")
    for kind in KINDS:
        for k in sorted(KS, reverse=True):
            per_event = _per_event(samples, kind, k)
            figures.append(
                Figure("core", f"{kind}_event_us_k{k}{suffix}", f"{titles[kind]} (K={k}{label})", median(per_event),
                       "us/event", TARGETS_US[kind], "<=",
                       {"iqr": spread(per_event),
                        "of_minima": round((min(samples[f"{kind}/{k}"]) - min(samples[f"{kind}/0"])) / k, 2),
                        other: round(median(_per_event(others, kind, k)), 2),
                        "t0": round(median(samples[f'{kind}/0']), 2),
                        f"t{k}": round(median(samples[f'{kind}/{k}']), 2)})
            )  # fmt: skip
    return figures


async def main_async(args: argparse.Namespace) -> tuple[list[Figure], dict[str, Any]]:
    def log(msg: str) -> None:
        if not args.quiet:
            print(f"[bench_core] {msg}", file=sys.stderr, flush=True)

    _register_handlers()
    apps = build_apps()
    lifespans = {name: Lifespan(app) for name, app in apps.items()}
    for lifespan in lifespans.values():
        await lifespan.start()
    states = {name: lifespan.state for name, lifespan in lifespans.items()}
    try:
        samples, sizes = await measure(
            apps, states, args.rounds, args.round_seconds, args.gc == "off", args.seed, log, args.concurrency
        )
        figures = build_figures(samples, sizes, args.clock, args.concurrency)
        if args.mem_requests:
            growth, extra = await memory_check(apps["mem"], states["mem"], args.mem_requests, log)
            figures.append(
                Figure("core", "memory_growth_kib", "net memory growth 10k->20k requests", growth, "KiB",
                       MEMORY_TARGET_KIB, "<=", extra)
            )  # fmt: skip
    finally:
        for lifespan in lifespans.values():
            await lifespan.stop()
    gc_note = (
        f"{'disabled during timed batches' if args.gc == 'off' else 'enabled'};"
        f" gc.collect() before every group of compared batches; thresholds {gc.get_threshold()}"
    )
    meta: dict[str, Any] = {
        **package_info(),
        "loop": args.loop,
        "load": load_note(),
        "gc": gc_note,
        "method": f"{args.clock} time, median of {args.rounds} interleaved rounds,"
        f" ~{args.round_seconds}s of requests per batch, {args.concurrency} request(s) in flight",
    }
    return figures, meta


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="one JSON object per figure on stdout")
    parser.add_argument("--rounds", type=int, default=120, help="rounds per configuration (median taken)")
    parser.add_argument("--round-seconds", type=float, default=0.01, help="target duration of one batch")
    parser.add_argument("--mem-requests", type=int, default=20_000, help="0 skips the memory check")
    parser.add_argument("--gc", choices=("on", "off"), default="on", help="GC during timed batches")
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="figures from process CPU time (default; robust to other load on the machine) or wall time",
    )
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--concurrency", type=int, default=1, help="requests in flight at once (streams of sequential requests)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.loop == "uvloop":
        import uvloop

        figures, meta = uvloop.run(main_async(args))
    else:
        figures, meta = asyncio.run(main_async(args))
    emit("bench_core (in-process ASGI)", meta, figures, args.json)


if __name__ == "__main__":
    main()
