"""The oldest releases the package claims to support, read from pyproject.toml's lower bounds.

    python .ci/oldest-pins.py            print pip constraints (``starlette==X`` ...) pinning each to its minimum
    python .ci/oldest-pins.py --write    write them to .ci/oldest-constraints.txt (what tox's py310-oldest installs with)
    python .ci/oldest-pins.py --check    fail unless the running environment has exactly those versions and the
                                         constraints file says the same

Deriving the pins from pyproject.toml keeps the oldest CI run testing what the package declares, not a copy of it
that drifts. Runs on every supported Python (no tomllib on 3.10: the bounds are plain ``"name>=X"`` strings).
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

FRAMEWORK = ("starlette", "fastapi", "pydantic")
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
CONSTRAINTS = Path(__file__).resolve().parent / "oldest-constraints.txt"


def minimums() -> dict[str, str]:
    text = PYPROJECT.read_text()
    found: dict[str, str] = {}
    for name in FRAMEWORK:
        bounds = set(re.findall(rf'"{name}>=([0-9][^",;<\s]*)', text))
        if len(bounds) != 1:
            sys.exit(f"oldest-pins: expected one '{name}>=X' lower bound in {PYPROJECT}, found {sorted(bounds)}")
        found[name] = bounds.pop()
    return found


def constraints(pins: dict[str, str]) -> str:
    return "".join(f"{name}=={version}\n" for name, version in pins.items())


def main() -> None:
    pins = minimums()
    if sys.argv[1:] == ["--write"]:
        CONSTRAINTS.write_text(constraints(pins))
        return
    if sys.argv[1:] == ["--check"]:
        if not CONSTRAINTS.is_file() or CONSTRAINTS.read_text() != constraints(pins):
            sys.exit(f"oldest-pins: {CONSTRAINTS} does not match pyproject.toml; run: python .ci/oldest-pins.py --write")
        wrong = {name: metadata.version(name) for name in pins if metadata.version(name) != pins[name]}
        if wrong:
            sys.exit(f"oldest-pins: installed {wrong}, expected the minimums {pins}")
        print("oldest-pins: " + ", ".join(f"{name} {version}" for name, version in pins.items()))
        return
    print(constraints(pins), end="")


if __name__ == "__main__":
    main()
