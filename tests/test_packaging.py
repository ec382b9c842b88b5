"""The release artifacts: the sdist and wheel build, pass `twine check`, and the wheel alone is a working package.

The wheel is installed into a fresh virtualenv with no extras (only Starlette comes along): importing the package
must work there, and what it serves or declares from its own files - the inspector's page, ``py.typed`` and the
pytest plugin entry point - must be inside the wheel. Marked ``packaging`` (runs in the newest environment): it
builds with uv, which needs the package index.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import fastapi_events

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[1]

# Runs in the clean virtualenv; prints what it found as JSON.
PROBE = """
import importlib.metadata as md, importlib.resources as res, importlib.util, json
import fastapi_events
from fastapi_events import dispatch, EventHandlerASGIMiddleware, local_handler
static = res.files("fastapi_events.inspector").joinpath("static")
plugins = [e for e in md.entry_points(group="pytest11") if e.dist.name == "fastapi-events"]
print(json.dumps({
    "version": fastapi_events.__version__,
    "metadata_version": md.version("fastapi-events"),
    "static": sorted(p.name for p in static.iterdir()),
    "py_typed": res.files("fastapi_events").joinpath("py.typed").is_file(),
    "pytest11": sorted(f"{e.name}={e.value}" for e in plugins),
    "fastapi": importlib.util.find_spec("fastapi") is not None,
    "boto3": importlib.util.find_spec("boto3") is not None,
}))
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from uv import find_uv_bin

    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [find_uv_bin(), "build", "--sdist", "--wheel", "--out-dir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def test_sdist_and_wheel_pass_twine_check(dist: Path) -> None:
    built = sorted(p.name for p in dist.iterdir() if p.suffix in {".whl", ".gz"})
    version = fastapi_events.__version__
    assert built == [f"fastapi_events-{version}-py3-none-any.whl", f"fastapi_events-{version}.tar.gz"]
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, sorted(dist.glob("fastapi_events-*")))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    with zipfile.ZipFile(next(dist.glob("*.whl"))) as wheel:
        names = wheel.namelist()
    assert not [n for n in names if n.startswith(("tests/", "docs", "benchmarks/"))]


def test_the_wheel_works_in_a_clean_virtualenv_without_extras(dist: Path, tmp_path: Path) -> None:
    from uv import find_uv_bin

    uv = find_uv_bin()
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--python", sys.executable, str(venv)], check=True, capture_output=True, timeout=120)
    python = venv / "bin" / "python"
    wheel = next(dist.glob("*.whl"))
    subprocess.run(
        [uv, "pip", "install", "--python", str(python), str(wheel)], check=True, capture_output=True, timeout=300
    )
    probe = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["version"] == found["metadata_version"] == fastapi_events.__version__
    assert found["static"] == sorted(p.name for p in (ROOT / "fastapi_events" / "inspector" / "static").iterdir())
    assert found["py_typed"] is True
    assert found["pytest11"] == ["fastapi_events=fastapi_events.testing.pytest_plugin"]
    assert (found["fastapi"], found["boto3"]) == (False, False)  # no extra came along
