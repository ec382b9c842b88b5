"""In-process ASGI benchmark of the event inspector: what mounting it costs per event when no page is open, and
(for information) what recording costs while a page watches.

Three states, measured in the same run and interleaved round by round (as ``bench_core.py`` does):

* ``none``     - FastAPI app with ``EventHandlerASGIMiddleware`` and one async no-op local handler, no inspector
  hook installed in the process (they are process-wide: installed, they would cost this app as much);
* ``mounted``  - an identical app with ``Inspector().app`` mounted at ``/_events``, no page open, keeping its
  history (the last 1 000 events with their outcomes, counts since start, each handler run timed into its
  latency histogram: the default) (target: at most +0.5 us per event over ``none``);
* ``watching`` - the same inspected app while a client watches (recording on: tail, per-handler latency, rate),
  including the time the page's next poll spends turning what the hooks queued into the tail.

Per event cost = (t(route dispatching K events) - t(same route dispatching 0)) / K; a batch ends when every
handler call has happened. Requests go through the app's ASGI ``__call__`` (no server), lifespan started first.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_inspector.py [--json] [--rounds N] [--clock wall]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from typing import Any

from _common import Figure, emit, load_note, median, package_info, spread
from bench_core import HITS, Config, Hits, Lifespan, run_batch
from bench_otel import parse_args  # the same options: --json --rounds --round-seconds --clock --seed --quiet
from fastapi import FastAPI
from starlette.responses import Response

from fastapi_events import _hooks
from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.inspector import Inspector
from fastapi_events.middleware import EventHandlerASGIMiddleware

K = 10
TARGET_US = 0.5
STATES = ("none", "mounted", "watching")
APP_OF = {"none": "insp.none", "mounted": "insp.mounted", "watching": "insp.mounted"}


def build_app(name: str, inspector: Inspector | None) -> FastAPI:
    hits = HITS[name] = Hits()
    handler = LocalHandler()

    @handler.register(event_name="bench.inspector")
    async def on_event(event: Any) -> None:
        hits.calls.append(None)

    app = FastAPI()
    app.state.local = handler
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[handler])
    for k in (0, K):

        async def endpoint(k: int = k) -> Response:
            for i in range(k):
                dispatch("bench.inspector", payload={"i": i})
            return Response(b"ok", media_type="text/plain")

        app.add_api_route(f"/{k}", endpoint, methods=["GET"])
    if inspector is not None:
        app.mount("/_events", inspector.app)
    return app


def enter(state: str, inspector: Inspector) -> None:
    """Put the process in ``state``. The inspector's hooks are process-wide: while they are installed every app
    of the process pays for them, the one without the inspector too, so ``none`` runs with none of them."""
    history = inspector.recorder.history
    assert history is not None, "the inspector keeps no history"
    if state == "watching":
        history.install()
        inspector.recorder.touch()  # what every request of an open page does
        return
    inspector.recorder.stop()
    if state == "none":
        history.uninstall()
        assert not _hooks.on_events, "the history's hook is left"
        assert not _hooks.time_handlers, "handler runs are still timed"
        return
    history.install()
    assert history.recording, "the history is not recording with no page open"
    assert not _hooks.on_handle, "a handler hook is installed with no page open"
    assert not _hooks.on_dispatch, "a dispatch hook is installed with no page open"
    assert _hooks.time_handlers, "handler runs are not timed with no page open"


async def measure(args: argparse.Namespace, log: Any) -> dict[str, dict[str, list[float]]]:
    # Room for a whole batch's events between two folds, as a page polling every second has at these rates.
    inspector = Inspector(idle_after=3600, max_events=5000)
    apps = {"insp.none": build_app("insp.none", None), "insp.mounted": build_app("insp.mounted", inspector)}
    lifespans = {name: Lifespan(app) for name, app in apps.items()}
    for lifespan in lifespans.values():
        await lifespan.start()
    try:
        sizes: dict[str, int] = {}
        for state in STATES:
            enter(state, inspector)
            for k in (0, K):
                cfg = Config(APP_OF[state], k)
                app, lifespan_state = apps[cfg.app], lifespans[cfg.app].state
                await run_batch(app, cfg, 50, lifespan_state, False)
                per_request = (await run_batch(app, cfg, 200, lifespan_state, False))[0] / 200
                sizes[f"{state}/{k}"] = max(100, min(100_000, int(args.round_seconds / per_request)))
        log("calibrated: " + ", ".join(f"{k}={v}" for k, v in sizes.items()))
        samples: dict[str, dict[str, list[float]]] = {"wall": {}, "cpu": {}}
        rng = random.Random(args.seed)
        for r in range(args.rounds):
            order = list(STATES)
            rng.shuffle(order)
            for state in order:
                enter(state, inspector)
                ks = [0, K]
                rng.shuffle(ks)
                for k in ks:
                    cfg = Config(APP_OF[state], k)
                    n = sizes[f"{state}/{k}"]
                    wall, cpu = await run_batch(apps[cfg.app], cfg, n, lifespans[cfg.app].state, False)
                    if state == "watching":
                        # What the page's next poll does with what the hooks queued: part of the cost.
                        start, start_cpu = time.perf_counter(), time.process_time()
                        inspector.recorder.fold()
                        wall += time.perf_counter() - start
                        cpu += time.process_time() - start_cpu
                    samples["wall"].setdefault(f"{state}/{k}", []).append(wall / n * 1e6)
                    samples["cpu"].setdefault(f"{state}/{k}", []).append(cpu / n * 1e6)
            log(f"round {r + 1}/{args.rounds} done")
        recorded = len(inspector.recorder.events)
        remembered = sum(sum(names.values()) for names in inspector.recorder.history.seen().values())  # type: ignore[union-attr]
        timed = sum(r.latency.total for r in apps["insp.mounted"].state.local.registrations)
    finally:
        inspector.recorder.close()
        for lifespan in lifespans.values():
            await lifespan.stop()
    if not recorded:
        raise RuntimeError("the watching state recorded no event: the inspector was not recording")
    if not remembered:
        raise RuntimeError("the mounted state kept no history: the inspector was not recording")
    if not timed:
        raise RuntimeError("the mounted state timed no handler run: handler latency was not recorded")
    return samples


def per_event(samples: dict[str, list[float]], state: str) -> list[float]:
    return [(a - b) / K for a, b in zip(samples[f"{state}/{K}"], samples[f"{state}/0"], strict=True)]


def _of_minima(samples: dict[str, list[float]], state: str) -> float:
    """The extra per event from each configuration's fastest round: the estimate least disturbed by other load."""

    def per_event_min(name: str) -> float:
        return (min(samples[f"{name}/{K}"]) - min(samples[f"{name}/0"])) / K

    return per_event_min(state) - per_event_min("none")


def build_figures(all_samples: dict[str, dict[str, list[float]]], clock: str) -> list[Figure]:
    samples = all_samples[clock]
    other_clock = "wall" if clock == "cpu" else "cpu"
    others = all_samples[other_clock]
    other = f"{other_clock}_median"
    cost = {state: per_event(samples, state) for state in STATES}
    other_cost = {state: per_event(others, state) for state in STATES}
    titles = {"none": "no inspector", "mounted": "inspector mounted, no page open", "watching": "page open"}
    figures = [
        Figure("inspector", f"{state}_event_us", f"{titles[state]}: per event, async no-op (K={K})",
               median(cost[state]), "us/event", extra={"iqr": spread(cost[state]),
                                                       other: round(median(other_cost[state]), 2)})
        for state in STATES
    ]  # fmt: skip
    for state, target in (("mounted", TARGET_US), ("watching", None)):
        extra = [a - b for a, b in zip(cost[state], cost["none"], strict=True)]
        other_extra = [a - b for a, b in zip(other_cost[state], other_cost["none"], strict=True)]
        figures.append(
            Figure("inspector", f"{state}_extra_us", f"{titles[state]}: extra per event vs no inspector",
                   median(extra), "us/event", target, "<=" if target is not None else None,
                   {"iqr": spread(extra), "of_minima": round(_of_minima(samples, state), 2),
                    other: round(median(other_extra), 2)})
        )  # fmt: skip
    return figures


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"[bench_inspector] {msg}", file=sys.stderr, flush=True)

    samples = asyncio.run(measure(args, log))
    meta = {
        **package_info(),
        "method": f"{args.clock} time, median of {args.rounds} interleaved rounds, ~{args.round_seconds}s per batch",
        "load": load_note(),
    }
    emit("bench_inspector (in-process ASGI)", meta, build_figures(samples, args.clock), args.json)


if __name__ == "__main__":
    main()
