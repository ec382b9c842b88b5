"""Handlers for consumer subprocesses started by the tests: every handled event becomes a line in a file.

``E2E_OUT``: the file (lines ``start PID N`` and ``done PID N``, appended with O_APPEND so that processes do
not interleave within a line); ``E2E_DELAY``: seconds each event takes.
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
    await asyncio.sleep(float(os.environ.get("E2E_DELAY", "0")))
    _append(path, f"done {os.getpid()} {n}\n")


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
