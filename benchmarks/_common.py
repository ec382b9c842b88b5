"""Shared bits of the benchmark scripts: which ``fastapi_events`` is loaded, figure records, output."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def package_info() -> dict[str, str]:
    """Label ("ours" / the PyPI version), version and location of the imported ``fastapi_events``."""
    import fastapi_events

    location = str(Path(next(iter(fastapi_events.__path__))).resolve())
    ours = Path(location).parent == REPO_ROOT
    version = getattr(fastapi_events, "__version__", None)
    if not isinstance(version, str):
        try:
            version = importlib.metadata.version("fastapi-events")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
    if ours:
        version = f"{version} (checkout)"
    versions = {"python": platform.python_version()}
    for dist in ("fastapi", "starlette", "pydantic", "uvicorn"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "-"
    return {
        "package": "ours" if ours else version,
        "version": version,
        "location": location,
        "stack": ", ".join(f"{k} {v}" for k, v in versions.items()),
    }


@dataclass
class Figure:
    bench: str  # "core" | "uvicorn"
    key: str  # stable id, e.g. "overhead_us"
    title: str  # human label
    value: float
    unit: str
    target: float | None = None
    target_op: str | None = None  # "<=" or ">="
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool | None:
        if self.target is None or self.target_op is None:
            return None
        return self.value <= self.target if self.target_op == "<=" else self.value >= self.target

    def as_json(self, meta: dict[str, Any]) -> str:
        doc = asdict(self)
        doc["ok"] = self.ok
        doc.update(meta)
        return json.dumps(doc, sort_keys=True)


_LOAD_AT_IMPORT = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def load_note() -> str:
    """1-minute load average when the script started and now: how busy the machine was during the run."""
    now = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return f"{_LOAD_AT_IMPORT:.1f} at start, {now:.1f} at end (1-min load average, {os.cpu_count()} CPUs)"


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """Inter-quartile range as "q1..q3" (a quick noise indicator next to a median)."""
    if len(values) < 4:
        return f"{min(values):.2f}..{max(values):.2f}"
    q = statistics.quantiles(values, n=4)
    return f"{q[0]:.2f}..{q[2]:.2f}"


def print_table(title: str, meta: dict[str, Any], figures: list[Figure]) -> None:
    print(f"\n== {title}: fastapi-events {meta['version']} ({meta['location']})")
    print(f"   {meta['stack']}")
    for key in ("loop", "gc", "method", "load"):
        if key in meta:
            print(f"   {key}: {meta[key]}")
    width = max(len(f.title) for f in figures) + 2
    print(f"   {'figure':<{width}} {'value':>10}  {'unit':<8} {'target':<9} {'':<4} detail")
    for f in figures:
        target = f"{f.target_op} {f.target:g}" if f.target is not None else ""
        ok = {True: "ok", False: "MISS", None: ""}[f.ok]
        detail = "  ".join(f"{k}={v}" for k, v in f.extra.items())
        print(f"   {f.title:<{width}} {f.value:>10.2f}  {f.unit:<8} {target:<9} {ok:<4} {detail}")
    sys.stdout.flush()


def emit(title: str, meta: dict[str, Any], figures: list[Figure], as_json: bool) -> None:
    if as_json:
        for f in figures:
            print(f.as_json(meta))
        sys.stdout.flush()
    else:
        print_table(title, meta, figures)
