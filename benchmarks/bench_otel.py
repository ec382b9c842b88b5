"""In-process ASGI benchmark of the OpenTelemetry integration: what tracing costs, and that it costs nothing
when no SDK is configured.

Three states, measured in the same run and interleaved round by round (as ``bench_core.py`` does):

* ``baseline`` - the FastAPI app without ``EventHandlerASGIMiddleware``, route dispatching nothing;
* ``api``      - the app with the middleware and one async no-op local handler; the OpenTelemetry API is
  installed and imported (FastAPI imports it) but no SDK provider is configured, so fastapi-events installs
  no hook: the figures must match ``bench_core.py``'s;
* ``sdk``      - the same app with SDK tracer and meter providers configured (a ``BatchSpanProcessor`` feeding
  an exporter that drops spans, an in-memory metric reader) and the instrumentation on: a ``send`` span per
  dispatch, a ``process`` span per handler call, four metric updates per event.

Per request overhead = t(app with middleware, route dispatching 0 events) - t(baseline). Per event cost =
(t(route dispatching K events) - t(same route dispatching 0)) / K, each event handled by one async no-op
handler; a batch of requests ends when every handler call has happened. Requests are driven through the app's
ASGI ``__call__`` (no server, no httpx), with the lifespan started first.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_otel.py [--json] [--rounds N] [--clock wall]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from _common import Figure, emit, median, package_info, spread
from bench_core import TARGETS_US, Hits, Lifespan, http_call, wait_for_hits
from fastapi import FastAPI
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from starlette.responses import Response

from fastapi_events import _hooks, otel
from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware

KS = (1, 10)
STATES = ("api", "sdk")


class DroppingExporter(SpanExporter):
    """Counts and drops spans: the SDK does all its work (processor, batching, export call), no I/O."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


HITS = Hits()
HANDLER = LocalHandler()


@HANDLER.register(event_name="bench.otel")
async def on_event(event: Any) -> None:
    HITS.calls.append(None)


def _route(app: FastAPI, k: int) -> None:
    async def endpoint() -> Response:
        for i in range(k):
            dispatch("bench.otel", payload={"i": i})
        return Response(b"ok", media_type="text/plain")

    app.add_api_route(f"/{k}", endpoint, methods=["GET"])


def build_apps() -> dict[str, FastAPI]:
    plain = FastAPI()
    _route(plain, 0)
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[HANDLER])
    for k in (0, *KS):
        _route(app, k)
    return {"baseline": plain, "mw": app}


class Telemetry:
    """Switches between the ``api`` and ``sdk`` states."""

    def __init__(self) -> None:
        self.exporter = DroppingExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def enter(self, state: str) -> None:
        if state == "sdk":
            if not otel.is_instrumented():
                assert otel.instrument(self.tracer_provider, self.meter_provider)
        else:
            otel.uninstrument()
            # The state this benchmark is about: nothing of ours on the hot path.
            assert not _hooks.on_dispatch, "dispatch hook installed without an SDK provider"
            assert not _hooks.on_handle, "handler hook installed without an SDK provider"

    def shutdown(self) -> None:
        otel.uninstrument()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


async def run_batch(app: Any, path: str, k: int, n: int, state: dict[str, Any]) -> tuple[float, float]:
    HITS.clear()
    gc.collect()
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        status = await http_call(app, path, state)
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}")
    if k:
        await wait_for_hits(HITS, n * k)
    return time.perf_counter() - start, time.process_time() - start_cpu


Configs = list[tuple[str, str, int]]  # (state, app, k)
CONFIGS: Configs = [("baseline", "baseline", 0)] + [(s, "mw", k) for s in STATES for k in (0, *KS)]


def _name(state: str, k: int) -> str:
    return f"{state}/{k}"


async def measure(
    apps: dict[str, FastAPI],
    states: dict[str, dict[str, Any]],
    telemetry: Telemetry,
    args: argparse.Namespace,
    log: Callable[[str], None],
) -> dict[str, dict[str, list[float]]]:
    sizes: dict[str, int] = {}
    for state, app, k in CONFIGS:
        telemetry.enter(state)
        await run_batch(apps[app], f"/{k}", k, 50, states[app])
        per_request = (await run_batch(apps[app], f"/{k}", k, 200, states[app]))[0] / 200
        sizes[_name(state, k)] = max(100, min(100_000, int(args.round_seconds / per_request)))
    log("calibrated: " + ", ".join(f"{k}={v}" for k, v in sizes.items()))
    samples: dict[str, dict[str, list[float]]] = {"wall": {}, "cpu": {}}
    rng = random.Random(args.seed)
    for r in range(args.rounds):
        # Each state's configs run back to back (they get subtracted from each other); states in random order.
        order = ["baseline", *STATES]
        rng.shuffle(order)
        for state in order:
            telemetry.enter(state)
            group = [c for c in CONFIGS if c[0] == state]
            rng.shuffle(group)
            for _, app, k in group:
                n = sizes[_name(state, k)]
                wall, cpu = await run_batch(apps[app], f"/{k}", k, n, states[app])
                samples["wall"].setdefault(_name(state, k), []).append(wall / n * 1e6)
                samples["cpu"].setdefault(_name(state, k), []).append(cpu / n * 1e6)
        reference = reference_costs(telemetry)
        for key, value in reference.items():
            samples["cpu"].setdefault(key, []).append(value[1])
            samples["wall"].setdefault(key, []).append(value[0])
        log(f"round {r + 1}/{args.rounds} done")
    return samples


def reference_costs(telemetry: Telemetry, n: int = 2000) -> dict[str, tuple[float, float]]:
    """(wall, cpu) us of the bare SDK operations our instrumentation is made of, on this machine, now."""
    tracer = telemetry.tracer_provider.get_tracer("bench-reference")
    counter = telemetry.meter_provider.get_meter("bench-reference").create_counter("bench.reference")
    attributes = {"messaging.system": "fastapi_events", "messaging.destination.name": "bench.otel"}
    out: dict[str, tuple[float, float]] = {}
    for key, operation in (
        ("ref/span", lambda: tracer.start_span("reference", attributes=attributes).end()),
        ("ref/counter", lambda: counter.add(1, attributes)),
    ):
        gc.collect()
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            operation()
        out[key] = ((time.perf_counter() - start) / n * 1e6, (time.process_time() - start_cpu) / n * 1e6)
    return out


def _diff(a: list[float], b: list[float], scale: float = 1.0) -> list[float]:
    return [(x - y) / scale for x, y in zip(a, b, strict=True)]


def build_figures(all_samples: dict[str, dict[str, list[float]]], clock: str) -> list[Figure]:
    samples = all_samples[clock]
    other_clock = "wall" if clock == "cpu" else "cpu"
    others = all_samples[other_clock]
    other = f"{other_clock}_median"
    base = samples["baseline/0"]
    figures = [
        Figure("otel", "baseline_us", "baseline: request without middleware", median(base), "us/req",
               extra={"iqr": spread(base), other: round(median(others["baseline/0"]), 2)}),
    ]  # fmt: skip
    titles = {"api": "API only, no SDK", "sdk": "SDK + instrumentation"}
    per_event: dict[str, dict[int, list[float]]] = {}
    for state in STATES:
        overhead = _diff(samples[f"{state}/0"], base)
        target = TARGETS_US["overhead"] if state == "api" else None
        figures.append(
            Figure("otel", f"{state}_overhead_us", f"{titles[state]}: middleware overhead", median(overhead),
                   "us/req", target, "<=" if target else None,
                   {"iqr": spread(overhead),
                    other: round(median(_diff(others[f"{state}/0"], others["baseline/0"])), 2)})
        )  # fmt: skip
        for k in sorted(KS, reverse=True):
            cost = _diff(samples[f"{state}/{k}"], samples[f"{state}/0"], k)
            per_event.setdefault(state, {})[k] = cost
            target = TARGETS_US["async"] if state == "api" else None
            figures.append(
                Figure("otel", f"{state}_event_us_k{k}", f"{titles[state]}: per event, async no-op (K={k})",
                       median(cost), "us/event", target, "<=" if target else None,
                       {"iqr": spread(cost),
                        other: round(median(_diff(others[f"{state}/{k}"], others[f"{state}/0"], k)), 2)})
            )  # fmt: skip
    for k in sorted(KS, reverse=True):
        extra = _diff(per_event["sdk"][k], per_event["api"][k])
        figures.append(
            Figure("otel", f"tracing_extra_us_k{k}", f"tracing+metrics extra per event (K={k})", median(extra),
                   "us/event", extra={"iqr": spread(extra)})
        )  # fmt: skip
    for key, title in (
        ("ref/span", "reference: bare SDK span start+end"),
        ("ref/counter", "reference: bare counter add"),
    ):
        figures.append(
            Figure("otel", key.replace("/", "_") + "_us", title, median(samples[key]), "us/op",
                   extra={"iqr": spread(samples[key]), other: round(median(others[key]), 2)})
        )  # fmt: skip
    return figures


async def main_async(args: argparse.Namespace) -> tuple[list[Figure], dict[str, Any]]:
    def log(msg: str) -> None:
        if not args.quiet:
            print(f"[bench_otel] {msg}", file=sys.stderr, flush=True)

    telemetry = Telemetry()
    apps = build_apps()
    lifespans = {name: Lifespan(app) for name, app in apps.items()}
    for lifespan in lifespans.values():
        await lifespan.start()
    states = {name: lifespan.state for name, lifespan in lifespans.items()}
    try:
        samples = await measure(apps, states, telemetry, args, log)
    finally:
        for lifespan in lifespans.values():
            await lifespan.stop()
        telemetry.tracer_provider.force_flush()
        exported = telemetry.exporter.exported
        telemetry.shutdown()
    if exported == 0:
        raise RuntimeError("the sdk state exported no span: instrumentation was not active")
    meta: dict[str, Any] = {
        **package_info(),
        "method": f"{args.clock} time, median of {args.rounds} interleaved rounds, ~{args.round_seconds}s per batch;"
        f" {exported} spans exported in the sdk state",
    }
    return build_figures(samples, args.clock), meta


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="one JSON object per figure on stdout")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--round-seconds", type=float, default=0.1)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    figures, meta = asyncio.run(main_async(args))
    emit("bench_otel (in-process ASGI, OpenTelemetry states)", meta, figures, args.json)


if __name__ == "__main__":
    main()
