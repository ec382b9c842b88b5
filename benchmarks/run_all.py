"""Run bench_core.py under ours and under fastapi-events 0.12.2, then bench_uvicorn.py; print Markdown tables.

``python benchmarks/run_all.py`` (any interpreter >= 3.10; standard library only). The old package's venv
(``benchmarks/.venv-old``) is created on first use. bench_core runs under each package one after the other;
bench_uvicorn drives servers of both packages (and the no-event / BackgroundTasks baselines) itself, in one run.
Pass-through options tune both benchmarks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import _venvs

BENCH_DIR = Path(__file__).resolve().parent

# figure key -> (row label, format, target text); rows in this order
ROWS: list[tuple[str, str, str, str]] = [
    ("baseline_us", "in-process request, no middleware (µs)", "{:.1f}", ""),
    ("with_middleware_us", "in-process request, with middleware (µs)", "{:.1f}", ""),
    ("overhead_us", "**middleware overhead (µs/request)**", "{:.1f}", "<= 1.5"),
    ("async_event_us_k10", "**dispatch + async no-op handler (µs/event, K=10)**", "{:.1f}", "<= 3"),
    ("async_event_us_k1", "dispatch + async no-op handler (µs/event, K=1)", "{:.1f}", "<= 3"),
    ("sync_event_us_k10", "**dispatch + sync no-op handler (µs/event, K=10)**", "{:.1f}", "<= 8"),
    ("sync_event_us_k1", "dispatch + sync no-op handler (µs/event, K=1)", "{:.1f}", "<= 8"),
    ("dep_event_us_k10", "**dispatch + handler with one Depends (µs/event, K=10)**", "{:.1f}", "<= 5"),
    ("dep_event_us_k1", "dispatch + handler with one Depends (µs/event, K=1)", "{:.1f}", "<= 5"),
    ("memory_growth_kib", "memory growth, requests 10k→20k (KiB)", "{:.1f}", "~0 (<= 64)"),
    ("async_event_us_k1_c20", "dispatch + async no-op handler (µs/event, K=1, 20 requests in flight)", "{:.1f}", ""),
    ("sync_event_us_k1_c20", "dispatch + sync no-op handler (µs/event, K=1, 20 requests in flight)", "{:.1f}", ""),
    ("sync_event_us_k10_c20", "dispatch + sync no-op handler (µs/event, K=10, 20 requests in flight)", "{:.1f}", ""),
    ("dep_event_us_k1_c20", "dispatch + handler with one Depends (µs/event, K=1, 20 in flight)", "{:.1f}", ""),
]
# The concurrent pass of bench_core: longer batches, so that most requests run with the others in flight.
CONCURRENT_CORE_ARGS = ["--concurrency", "20", "--round-seconds", "0.05", "--rounds", "40", "--mem-requests", "0"]

# 0.12.2 as measured on the reference machine of issue #2, to tell how fast this machine / run was.
ISSUE_OLD_FIGURES = {
    "overhead_us": 22.0,
    "async_event_us_k10": 60.0,
    "sync_event_us_k10": 75.0,
    "dep_event_us_k10": 77.0,
}


def run_bench(interp: _venvs.Interpreter, script: str, extra: list[str]) -> tuple[list[dict[str, Any]], str]:
    print(f"[run_all] {interp.label}: {script} {' '.join(extra)}", file=sys.stderr, flush=True)
    started = time.monotonic()
    res = interp.run([str(BENCH_DIR / script), "--json", *extra], stdout=subprocess.PIPE)
    elapsed = time.monotonic() - started
    if res.returncode != 0:
        return [], f"{script} failed (exit {res.returncode}) after {elapsed:.0f}s"
    figures = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    print(f"[run_all] {interp.label}: {script} done in {elapsed:.0f}s", file=sys.stderr, flush=True)
    return figures, ""


def cell(fig: dict[str, Any] | None, fmt: str) -> str:
    if fig is None:
        return "n/a"
    text = fmt.format(fig["value"])
    if fig.get("ok") is False:
        text += " ✗"
    elif fig.get("ok") is True:
        text += " ✓"
    minima = fig.get("extra", {}).get("of_minima")
    if minima is not None:
        text += f" ({fmt.format(minima)})"
    return text


def git_head() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(_venvs.REPO_ROOT), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", choices=("ours", "old"), help="run a single package")
    parser.add_argument("--skip-uvicorn", action="store_true")
    parser.add_argument("--skip-core", action="store_true")
    parser.add_argument("--core-args", default="", help="extra arguments for bench_core.py (one string)")
    parser.add_argument("--uvicorn-args", default="", help="extra arguments for bench_uvicorn.py (one string)")
    parser.add_argument("--output", type=Path, help="also write the Markdown table to this file")
    args = parser.parse_args(argv)

    interpreters: list[_venvs.Interpreter] = []
    notes: list[str] = []
    if args.only != "ours":
        interpreters.append(_venvs.ensure_old_venv())
    if args.only != "old":
        ok, detail = _venvs.ours_importable()
        if ok:
            interpreters.append(_venvs.ours())
        else:
            notes.append(f"ours not importable ({detail}): not measured")
            print(f"[run_all] ours not importable: {detail}", file=sys.stderr)

    results: dict[str, dict[str, dict[str, Any]]] = {"ours": {}, _venvs.OLD_VERSION: {}}
    meta: dict[str, dict[str, Any]] = {}
    for interp in interpreters:
        if args.skip_core:
            break
        figures, error = run_bench(interp, "bench_core.py", args.core_args.split())
        if figures:
            meta.setdefault(interp.label, {})["load bench_core.py"] = figures[0].get("load", "?")
        if error:
            notes.append(f"{interp.label}: {error}")
        concurrent, error = run_bench(interp, "bench_core.py", [*CONCURRENT_CORE_ARGS, *args.core_args.split()])
        if error:
            notes.append(f"{interp.label} (concurrent): {error}")
        figures += [fig for fig in concurrent if fig["key"].endswith("_c20")]
        for fig in figures:
            results[interp.label][fig["key"]] = fig
            meta.setdefault(interp.label, {}).update(
                {k: fig[k] for k in ("version", "location", "stack", "gc") if k in fig}
            )
    uvicorn_table = ""
    if not args.skip_uvicorn:
        columns = {"ours": "ours,bg", "old": f"{_venvs.OLD_VERSION},bg"}.get(args.only or "", "")
        extra = [*args.uvicorn_args.split(), *(["--columns", columns] if columns else [])]
        print(f"[run_all] bench_uvicorn.py {' '.join(extra)}", file=sys.stderr, flush=True)
        res = _venvs.ours().run([str(BENCH_DIR / "bench_uvicorn.py"), *extra], stdout=subprocess.PIPE)
        if res.returncode != 0:
            notes.append(f"bench_uvicorn.py failed (exit {res.returncode})")
        uvicorn_table = res.stdout.strip()

    lines = [
        "| figure | ours | 0.12.2 | target |",
        "|---|---:|---:|---|",
    ]
    for key, label, fmt, target in ROWS:
        ours_fig, old_fig = results["ours"].get(key), results[_venvs.OLD_VERSION].get(key)
        if ours_fig is None and old_fig is None:
            continue
        lines.append(f"| {label} | {cell(ours_fig, fmt)} | {cell(old_fig, fmt)} | {target} |")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    stack = next((m["stack"] for m in meta.values() if "stack" in m), "?")
    footer = [
        "",
        f"Measured {now} on this machine, both packages in one `python benchmarks/run_all.py` run; "
        f"ours = `{git_head()}`; {stack}.",
        "µs figures: process CPU time, median over interleaved rounds of the difference against a baseline "
        "measured in the same round; in parentheses the difference of the per-configuration minima over the "
        "rounds, the estimate least disturbed by other load (see benchmarks/README.md). ✓/✗ = target met/missed "
        "(judged on the median).",
    ]
    old_results = results[_venvs.OLD_VERSION]
    factors = [
        old_results[key]["value"] / reference
        for key, reference in ISSUE_OLD_FIGURES.items()
        if key in old_results and old_results[key]["value"] > 0
    ]
    min_factors = [
        old_results[key]["extra"]["of_minima"] / reference
        for key, reference in ISSUE_OLD_FIGURES.items()
        if key in old_results and "of_minima" in old_results[key].get("extra", {})
    ]
    if factors:
        footer.append(
            f"0.12.2 measured here at {min(factors):.1f}-{max(factors):.1f}x (medians) and "
            f"{min(min_factors or [0]):.1f}-{max(min_factors or [0]):.1f}x (minima) the issue's reference "
            "figures (22 / 60 / 75 / 77 µs), i.e. this machine / run was about that much slower than the "
            "reference one."
        )
    for label, m in meta.items():
        loads = "; ".join(f"{k}: {v}" for k, v in m.items() if k.startswith("load "))
        footer.append(f"- {label}: {m.get('version')}; core GC: {m.get('gc', '-')}; machine {loads}")
    footer.extend(f"- note: {n}" for n in notes)
    if uvicorn_table:
        title = "End to end (`bench_uvicorn.py`), requests/s as % of the same app without events:"
        footer.extend(["", title, "", uvicorn_table])
    table = "\n".join(lines + footer)
    print(table)
    if args.output:
        args.output.write_text(table + "\n")
    return 1 if any("failed" in n for n in notes) else 0


if __name__ == "__main__":
    sys.exit(main())
