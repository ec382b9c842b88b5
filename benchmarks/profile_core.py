"""Profile one bench_core configuration: where the time of a request / an event goes.

``PYTHONPATH=. .venv/bin/python benchmarks/profile_core.py sync 10`` runs the ``sync`` app's ``/10`` route
(see bench_core.py) ``-n`` times, prints wall and CPU µs per request, then the same under cProfile, sorted by
own time (``--sort cumulative`` for inclusive time). Apps: plain, mw, async, sync, dep (K: 0, 1, 10).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time

import bench_core


async def run(app_name: str, k: int, n: int, profile: bool, sort: str, limit: int) -> None:
    bench_core._register_handlers()
    apps = bench_core.build_apps()
    app = apps[app_name]
    lifespan = bench_core.Lifespan(app)
    await lifespan.start()
    cfg = bench_core.Config(app_name, k)
    try:
        await bench_core.run_batch(app, cfg, min(n, 500), lifespan.state, gc_off=False)  # warm-up
        wall, cpu = await bench_core.run_batch(app, cfg, n, lifespan.state, gc_off=False)
        print(f"{cfg.name}: {wall / n * 1e6:.2f} us/request wall, {cpu / n * 1e6:.2f} us/request CPU (n={n})")
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await bench_core.run_batch(app, cfg, n, lifespan.state, gc_off=False)
            profiler.disable()
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.sort_stats(sort).print_stats(limit)
    finally:
        await lifespan.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("app", choices=("plain", "mw", *bench_core.KINDS))
    parser.add_argument("k", type=int, choices=(0, *bench_core.KS))
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--limit", type=int, default=30)
    args = parser.parse_args()
    if args.app in ("plain", "mw") and args.k != 0:
        parser.error("plain and mw only have /0")
    started = time.perf_counter()
    asyncio.run(run(args.app, args.k, args.n, not args.no_profile, args.sort, args.limit))
    print(f"total {time.perf_counter() - started:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
