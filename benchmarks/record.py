"""Run the benchmarks with ``--json`` and save each one's figures in ``benchmarks/results/<name>.json``.

    python benchmarks/record.py                      every benchmark at its full size (about an hour)
    python benchmarks/record.py --quick              small sizes: checks the pipeline, figures are not meaningful
    python benchmarks/record.py --only core uvicorn  some of them

Each file holds the machine (CPU model, cores, memory, kernel), the date, the git revision, the command lines and
the figures exactly as the scripts printed them (every figure already pairs ours with a baseline or fastapi-events
0.12.2 measured in the same run). ``benchmarks/plot.py`` turns the files into the SVG plots of docs/benchmarks.md
(``make bench-plots``). Standard library only; the interpreters are those of the other scripts (``_venvs.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import _venvs

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"

# name -> runs; a run is (interpreter: "ours" | "old", script, full-size arguments, --quick arguments)
Run = tuple[str, str, list[str], list[str]]
CONCURRENT = ["--concurrency", "20", "--round-seconds", "0.05", "--mem-requests", "0"]
BENCHMARKS: dict[str, list[Run]] = {
    "core": [
        (who, "bench_core.py", args, quick)
        for args, quick in [
            ([], ["--rounds", "6", "--mem-requests", "0"]),
            ([*CONCURRENT, "--rounds", "40"], [*CONCURRENT, "--rounds", "4"]),
        ]
        for who in ("ours", "old")
    ],
    "uvicorn": [
        (
            "ours",
            "bench_uvicorn.py",
            [],
            ["--rounds", "1", "--duration", "1", "--warmup", "0", "--rows", "fastapi-async1,starlette-async10"],
        )
    ],
    "forwarders": [("ours", "bench_forwarders.py", [], ["--requests", "60", "--old-timeout", "5"])],
    "handover": [("ours", "bench_handover.py", [], ["--rounds", "1", "--duration", "1"])],
    "consumers": [("ours", "bench_consumers.py", [], ["--events", "2000", "--processes", "1,2", "--brokers", "redis"])],
    "forward_load": [
        (
            "ours",
            "bench_forward_load.py",
            [],
            ["--rounds", "1", "--duration", "1", "--warmup", "1", "--connections", "4", "--brokers", "redis,kafka"],
        )
    ],
    # 41 rounds: the target is a fraction of a microsecond, and each round is a tenth of a second.
    "inspector": [("ours", "bench_inspector.py", ["--rounds", "41"], ["--rounds", "5"])],
    "stream": [("ours", "bench_stream.py", [], ["--subscribers", "50", "--rates", "10,50", "--duration", "1"])],
    "outbox": [("ours", "bench_outbox.py", [], ["--events", "1000", "--rounds", "3", "--samples", "30"])],
    "delayed": [("ours", "bench_delayed.py", [], ["--events", "1000", "--window", "3", "--rounds", "1"])],
    "webhooks": [("ours", "bench_webhooks.py", [], ["--events", "300", "--rounds", "1"])],
}


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_gib": memory,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def git_revision() -> str:
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=BENCH_DIR, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def record(name: str, runs: list[Run], quick: bool) -> Path:
    interpreters = {"ours": _venvs.ours()}
    if any(who == "old" for who, *_ in runs):
        interpreters["old"] = _venvs.ensure_old_venv(quiet=True)
    load_before = os.getloadavg()[0]
    started = datetime.now(timezone.utc)
    figures: list[dict[str, Any]] = []
    commands: list[str] = []
    for who, script, full, small in runs:
        args = [str(BENCH_DIR / script), "--json", *(small if quick else full)]
        commands.append(f"{interpreters[who].label}: {script} {' '.join(args[2:])}".strip())
        print(f"[record] {name}: {commands[-1]}", file=sys.stderr, flush=True)
        began = time.monotonic()
        done = interpreters[who].run(args, stdout=subprocess.PIPE)
        if done.returncode != 0:
            raise SystemExit(f"[record] {script} failed (exit {done.returncode}); nothing saved for {name}")
        found = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        if not found:
            raise SystemExit(f"[record] {script} printed no figure; nothing saved for {name}")
        figures.extend({**figure, "interpreter": interpreters[who].label} for figure in found)
        print(f"[record] {name}: {len(found)} figures in {time.monotonic() - began:.0f} s", file=sys.stderr)
    document = {
        "benchmark": name,
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load": f"{load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end (1-min load average)",
        "revision": git_revision(),
        "quick": quick,
        "commands": commands,
        "figures": figures,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (checks the pipeline only)")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    args = parser.parse_args()
    failed = []
    for name in args.only or BENCHMARKS:
        try:
            print(f"[record] wrote {record(name, BENCHMARKS[name], args.quick)}", file=sys.stderr)
        except SystemExit as exc:
            print(exc, file=sys.stderr)
            failed.append(name)
    if failed:
        raise SystemExit(f"[record] failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
