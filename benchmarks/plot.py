"""Draw the plots of docs/benchmarks.md from the saved results: ``make bench-plots``.

    python benchmarks/plot.py                    every benchmarks/results/<name>.json -> docs/img/bench-<name>.svg
    python benchmarks/plot.py results/core.json  some of them

Runs no benchmark (``benchmarks/record.py`` saves the results). Every plot says which machine and day its figures
come from; all bars of one plot were measured in the same run. Needs matplotlib (the ``docs`` extra).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
IMAGES = BENCH_DIR.parent / "docs" / "img"
COLORS = {"ours": "#2b7bba", "0.12.2": "#d95f02", "bg": "#7570b3"}
OTHER_COLORS = ["#1b9e77", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]

plt.rcParams.update(
    {
        "svg.hashsalt": "fastapi-events",  # stable element ids: a re-drawn plot of the same data is the same file
        "svg.fonttype": "none",  # text stays text (smaller, searchable)
        "font.size": 9,
    }
)

Bar = tuple[str, str, float, tuple[float, float] | None]  # category, series, value, (low, high) or None


def color(series: str, order: list[str]) -> str:
    return COLORS.get(series) or OTHER_COLORS[order.index(series) % len(OTHER_COLORS)]


def grouped_bars(ax: Any, bars: list[Bar], unit: str, *, log: bool = False) -> None:
    """Horizontal bars: one group per category (top to bottom in first-seen order), one bar per series."""
    categories = list(dict.fromkeys(category for category, *_ in bars))
    series = sorted(dict.fromkeys(name for _, name, *_ in bars), key=lambda name: not name.startswith("ours"))
    height = 0.8 / len(series)
    for index, name in enumerate(series):
        mine = [(categories.index(c), v, r) for c, s, v, r in bars if s == name]
        ys = [len(categories) - 1 - c + (len(series) / 2 - index - 0.5) * height for c, _, _ in mine]
        values = [v for _, v, _ in mine]
        lows = [min(r[0], v) if r else v for _, v, r in mine]
        highs = [max(r[1], v) if r else v for _, v, r in mine]
        errors = [
            [v - low for v, low in zip(values, lows, strict=True)],
            [h - v for v, h in zip(values, highs, strict=True)],
        ]
        ax.barh(ys, values, height=height * 0.95, color=color(name, series), label=name, xerr=errors, capsize=2)
        for y, value, high in zip(ys, values, highs, strict=True):
            text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
            ax.annotate(f" {text}", (max(value, high, 0), y), va="center", fontsize=7)
    ax.set_yticks(range(len(categories)), list(reversed(categories)))
    ax.set_xlabel(unit)
    if log:  # symmetric: a difference to the baseline may be zero or negative (noise)
        ax.set_xscale("symlog", linthresh=1)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)


def iqr(figure: dict[str, Any]) -> tuple[float, float] | None:
    text = str(figure.get("extra", {}).get("iqr", ""))
    match = re.fullmatch(r"(-?[\d.]+)\.\.(-?[\d.]+)", text)
    return (float(match[1]), float(match[2])) if match else None


def series_of(figure: dict[str, Any]) -> str:
    # The package label a script measured ("ours", "ours+spool", "0.12.2"), else the interpreter record.py used.
    return str(figure.get("package") or figure.get("interpreter", "ours"))


def plot_core(doc: dict[str, Any]) -> list[tuple[str, list[Bar], bool]]:
    per_event: list[Bar] = []
    seen: set[tuple[str, str]] = set()
    for f in doc["figures"]:
        # The concurrent pass repeats the sequential figures that do not depend on concurrency: keep the first.
        wanted = f["unit"].startswith("us/") and f["key"] not in ("baseline_us", "with_middleware_us")
        if wanted and (f["title"], series_of(f)) not in seen:
            seen.add((f["title"], series_of(f)))
            per_event.append((f["title"], series_of(f), f["value"], iqr(f)))
    return [("µs of CPU per event or request (median, interquartile range); log scale", per_event, True)]


def plot_uvicorn(doc: dict[str, Any]) -> list[tuple[str, list[Bar], bool]]:
    bars: list[Bar] = []
    for f in doc["figures"]:
        category, _, column = f["title"].rpartition(", ")
        rounds = f.get("extra", {}).get("rounds") or [f["value"]]
        bars.append((category, column, f["value"], (min(rounds), max(rounds))))
    return [("requests/s as % of the same app without events (median, lowest-highest round)", bars, False)]


def plot_handover(doc: dict[str, Any]) -> list[tuple[str, list[Bar], bool]]:
    # One document: {"answered": {config: [ratio per round]}, "delivered": {...}}; ratios to the no-event baseline.
    [found] = doc["figures"]
    labels = {
        "before": "in the memory queue (before)",
        "after": "acknowledged by Redis (now)",
        "spool": "committed to the spool",
    }
    bars: list[Bar] = []
    for what in ("answered", "delivered"):
        for config, label in labels.items():
            ratios = [100 * r for r in found[what][config]]
            bars.append((f"requests/s {what}", label, sorted(ratios)[len(ratios) // 2], (min(ratios), max(ratios))))
    return [("% of the requests/s of the same app without events (median, lowest-highest round)", bars, False)]


def plot_generic(doc: dict[str, Any]) -> list[tuple[str, list[Bar], bool]]:
    by_unit: dict[str, list[Bar]] = {}
    for f in doc["figures"]:
        by_unit.setdefault(f["unit"], []).append((f["title"], series_of(f), f["value"], iqr(f)))
    return [(unit, bars, False) for unit, bars in by_unit.items()]


PLOTTERS: dict[str, Callable[[dict[str, Any]], list[tuple[str, list[Bar], bool]]]] = {
    "core": plot_core,
    "uvicorn": plot_uvicorn,
    "handover": plot_handover,
}


def draw(path: Path) -> Path:
    doc = json.loads(path.read_text())
    panels = PLOTTERS.get(doc["benchmark"], plot_generic)(doc)
    # Each panel as tall as its bars (plus room for its axis), so that bars have one thickness across panels.
    heights = [len({c for c, *_ in bars}) * len({s for _, s, *_ in bars}) * 0.22 + 0.7 for _, bars, _ in panels]
    longest = max(len(c) for _, bars, _ in panels for c, *_ in bars)
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(max(9.0, 5 + 0.07 * longest), 0.8 + sum(heights)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for ax, (unit, bars, log) in zip(axes[:, 0], panels, strict=True):
        grouped_bars(ax, bars, unit, log=log)
    machine = doc["machine"]
    memory = f", {machine['memory_gib']:g} GiB" if machine.get("memory_gib") else ""
    note = " - QUICK RUN: checks the pipeline, figures not meaningful" if doc.get("quick") else ""
    fig.suptitle(
        f"{doc['benchmark']}: {doc['date']}, {machine['cpu']}, {machine['cpus']} CPUs{memory}{note}\n"
        f"load {doc['load']}; every bar of this plot measured in the same run ({doc['revision']})",
        fontsize=8,
        x=0.01,
        horizontalalignment="left",
    )
    fig.tight_layout()
    IMAGES.mkdir(parents=True, exist_ok=True)
    out = IMAGES / f"bench-{doc['benchmark']}.svg"
    fig.savefig(out, format="svg", metadata={"Date": None})
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="*", type=Path, help="result files (default: benchmarks/results/*.json)")
    args = parser.parse_args()
    paths = args.results or sorted(RESULTS.glob("*.json"))
    if not paths:
        sys.exit(f"no results in {RESULTS}: run benchmarks/record.py first")
    for path in paths:
        print(f"{path} -> {draw(path)}")


if __name__ == "__main__":
    main()
