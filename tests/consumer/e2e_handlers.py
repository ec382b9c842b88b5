"""Handlers for consumers started by the tests (subprocesses, or tasks for the in-memory broker): every attempt
becomes lines in a file.

``E2E_OUT``: the file (lines ``start PID N``, ``done PID N``, ``stop PID N``, appended with O_APPEND so that
processes do not interleave within a line - the file is one total order of what every consumer did);
``E2E_DELAY``: seconds each ``item.*`` event takes (unless its payload says ``delay``).

- ``item.*``: recorded (start, then done after the delay);
- ``flaky.*``: the first attempt of each N fails, later ones succeed;
- ``broken.*``: always fails;
- ``hang.*``: never returns by itself; ``stop`` is written when it is cancelled.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import Any

from fastapi import Depends

from fastapi_events.handlers.local import LocalHandler

handler = LocalHandler()


def out_path() -> str:
    return os.environ["E2E_OUT"]


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@handler.register(event_name="item.*")
async def record(event: tuple[str, Any], path: str = Depends(out_path)) -> None:
    n = event[1]["n"]
    _append(path, f"start {os.getpid()} {n}\n")
    await asyncio.sleep(float(event[1].get("delay", os.environ.get("E2E_DELAY", "0"))))
    _append(path, f"done {os.getpid()} {n}\n")


@handler.register(event_name="flaky.*")
async def flaky(event: tuple[str, Any], path: str = Depends(out_path)) -> None:
    n = event[1]["n"]
    _append(path, f"start {os.getpid()} {n}\n")
    if sum(1 for line in read_lines(path) if line.split()[0] == "start" and int(line.split()[2]) == n) == 1:
        _append(path, f"stop {os.getpid()} {n}\n")
        raise RuntimeError(f"first attempt of {n} fails")
    _append(path, f"done {os.getpid()} {n}\n")


@handler.register(event_name="broken.*")
async def broken(event: tuple[str, Any]) -> None:
    raise RuntimeError("broken handler")


@handler.register(event_name="hang.*")
async def hang(event: tuple[str, Any], path: str = Depends(out_path)) -> None:
    n = event[1]["n"]
    _append(path, f"start {os.getpid()} {n}\n")
    try:
        await asyncio.sleep(3600)
    finally:
        _append(path, f"stop {os.getpid()} {n}\n")


def read_lines(path: str) -> list[str]:
    try:
        with open(path) as lines:
            return lines.read().splitlines()
    except FileNotFoundError:
        return []


def peak_concurrency(path: str) -> dict[int, int]:
    """Per N, the most attempts that were running at the same time (by the file's order of start/done/stop)."""
    running: dict[int, int] = {}
    peak: dict[int, int] = {}
    for line in read_lines(path):
        kind, _, n = line.split()
        if kind == "start":
            running[int(n)] = running.get(int(n), 0) + 1
            peak[int(n)] = max(peak.get(int(n), 0), running[int(n)])
        elif kind in ("done", "stop"):
            running[int(n)] -= 1
    return peak


def read_done(path: str) -> list[int]:
    try:
        with open(path) as lines:
            return [int(line.split()[2]) for line in lines if line.startswith("done ")]
    except FileNotFoundError:
        return []


def legacy_deserializer(body: bytes, attributes: Mapping[str, str]) -> tuple[str, Any]:
    """Reads bodies of a custom serializer: ``{"kind": name, "n": N}``."""
    data = json.loads(body)
    return (data["kind"], {"n": data["n"]})
