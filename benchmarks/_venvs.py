"""Interpreters the benchmarks run under: "ours" (this checkout) and "old" (fastapi-events 0.12.2 from PyPI).

* **ours** - the repository's own interpreter (``/work/main/.venv/bin/python`` or
  ``$FE_BENCH_OURS_PYTHON``) with the repository root prepended to ``PYTHONPATH``, so the checkout's
  ``fastapi_events`` is imported whether or not it is pip-installed into that venv.
* **old** - ``benchmarks/.venv-old``: ``fastapi-events==0.12.2`` plus the *same* versions of fastapi,
  starlette, pydantic, pydantic-core, anyio, uvicorn, uvloop and httptools as the "ours" interpreter, so only
  the events package differs. Created on first use, reused afterwards (a marker file records the pins it
  was built with; when the pins change, the venv is rebuilt).

Run ``python benchmarks/_venvs.py`` to create / check the old venv by hand. Standard library only: the
benchmark scripts import this module under both interpreters.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
OLD_VENV = BENCH_DIR / ".venv-old"
OLD_VERSION = "0.12.2"
MARKER = OLD_VENV / "fe-bench-pins.json"

# Distributions pinned in the old venv to whatever the "ours" interpreter has.
SHARED_DISTS = (
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic-core",
    "anyio",
    "uvicorn",
    "uvloop",
    "httptools",
    "boto3",  # bench_forwarders.py: the old SQSForwardHandler needs it
    "botocore",
)

_PROBE = (
    "import importlib.metadata as m, json, sys\n"
    "out = {}\n"
    "for d in sys.argv[1:]:\n"
    "    try:\n"
    "        out[d] = m.version(d)\n"
    "    except m.PackageNotFoundError:\n"
    "        pass\n"
    "print(json.dumps(out))\n"
)


@dataclass(frozen=True)
class Interpreter:
    label: str  # "ours" or "0.12.2"
    python: str
    env: dict[str, str]

    def run(self, args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            [self.python, *args], env=self.env, text=True, cwd=str(BENCH_DIR), **kwargs
        )


def ours_python() -> str:
    override = os.environ.get("FE_BENCH_OURS_PYTHON")
    if override:
        return override
    candidate = REPO_ROOT / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    env.pop("FASTAPI_EVENTS_DISABLE_DISPATCH", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def ours() -> Interpreter:
    env = _base_env()
    env["PYTHONPATH"] = str(REPO_ROOT)
    return Interpreter("ours", ours_python(), env)


def old() -> Interpreter:
    # No PYTHONPATH, cwd = benchmarks/: the checkout's fastapi_events can't shadow the installed 0.12.2.
    return Interpreter(OLD_VERSION, str(OLD_VENV / "bin" / "python"), _base_env())


def shared_pins(python: str | None = None) -> dict[str, str]:
    out = subprocess.run(
        [python or ours_python(), "-c", _PROBE, *SHARED_DISTS],
        check=True,
        capture_output=True,
        text=True,
        env=_base_env(),
    ).stdout
    pins: dict[str, str] = json.loads(out)
    return pins


def _base_python(python: str) -> str:
    """The interpreter a venv was created from (so the old venv gets the very same CPython build)."""
    out = subprocess.run(
        [python, "-c", "import sys; print(getattr(sys, '_base_executable', sys.executable))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return out or python


def ensure_old_venv(*, quiet: bool = False) -> Interpreter:
    """Create ``benchmarks/.venv-old`` unless it already exists with the same pins. Idempotent."""
    pins = shared_pins()
    wanted = {"fastapi-events": OLD_VERSION, **pins}
    python = OLD_VENV / "bin" / "python"
    if python.exists() and MARKER.exists():
        try:
            if json.loads(MARKER.read_text()) == wanted:
                return old()
        except ValueError:
            pass
    if not quiet:
        print(f"[venvs] building {OLD_VENV} with {wanted}", file=sys.stderr)
    if OLD_VENV.exists():
        shutil.rmtree(OLD_VENV)
    subprocess.run([_base_python(ours_python()), "-m", "venv", str(OLD_VENV)], check=True)
    reqs = [f"{name}=={version}" for name, version in wanted.items()]
    if "uvicorn" in pins:
        reqs.append(f"uvicorn[standard]=={pins['uvicorn']}")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *reqs],
        check=True,
        env=_base_env(),
    )
    got = shared_pins(str(python))
    got_fe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('fastapi-events'))"],
        check=True,
        capture_output=True,
        text=True,
        cwd=str(BENCH_DIR),
    ).stdout.strip()
    if got != pins or got_fe != OLD_VERSION:
        raise SystemExit(f"[venvs] old venv has {got} + fastapi-events {got_fe}, wanted {wanted}")
    MARKER.write_text(json.dumps(wanted, indent=1, sort_keys=True))
    return old()


def ours_importable() -> tuple[bool, str]:
    probe = (
        "import fastapi_events.middleware, fastapi_events.dispatcher, fastapi_events.handlers.local, "
        "fastapi_events; print(list(fastapi_events.__path__)[0])"
    )
    res = ours().run(["-c", probe], capture_output=True)
    if res.returncode != 0:
        return False, (res.stderr.strip().splitlines() or ["?"])[-1]
    return True, res.stdout.strip()


if __name__ == "__main__":
    interp = ensure_old_venv()
    print(f"old:  {interp.python}  (pins {MARKER.read_text().strip()})")
    ok, detail = ours_importable()
    print(f"ours: {ours().python} PYTHONPATH={REPO_ROOT} importable={ok} ({detail})")
