"""Count, over the AST of ``fastapi_events``, what the layering rules of docs/contracts.md forbid or watch.

- imports of another subpackage's underscore modules (``brokers.kafka`` importing ``delivery._options``): must be 0;
- imports of the top package's own underscore modules (``fastapi_events._runtime``) from a subpackage: the core's
  internals, allowed (the subpackages build on the core), counted so that their number stays visible;
- ``getattr`` / ``hasattr`` calls per package (duck typing shows up there first);
- top-level modules and packages missing from the layers contract of pyproject.toml (import-linter does not check
  a module no layer names): must be none.

Independent of import-linter (``lint-imports``), which checks the same rule from its own import graph.
``python scripts/layering_counts.py [--json]``; exits 1 when an import crosses into another package's underscore
module or a module is in no layer.
"""

from __future__ import annotations

import argparse
import ast
import collections
import importlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "fastapi_events"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.Module, name: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every import in ``tree``: ``import a.b`` as ``a.b``, ``from a import b`` as ``a.b``
    (``b`` a module or a name: a private module shows as an underscore part either way)."""
    package = name if is_package else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            # One per name taken: ``from ._x import a, b`` takes two names from the private module ``_x``.
            found += [(node.lineno, f"{origin}.{alias.name}") for alias in node.names]
    return found


def private_owner(module: str) -> str | None:
    """The package whose underscore module ``module`` is (or is inside), else None."""
    parts = module.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:index])
    return None


def subpackage(module: str) -> str:
    """``fastapi_events.brokers.kafka._url`` -> ``fastapi_events.brokers``; top-level modules -> the top package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or (ROOT / Path(*parts)).is_dir() else PACKAGE


def unlayered() -> list[str]:
    """Top-level modules and packages of ``fastapi_events`` that no layer of the ``layers`` contract names."""
    try:
        tomllib = importlib.import_module("tomllib")
    except ImportError:  # Python 3.10: the contract is checked where import-linter runs (3.11+)
        return []
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    layered = {
        name.strip()
        for contract in config["tool"]["importlinter"]["contracts"]
        if contract["type"] == "layers"
        for layer in contract["layers"]
        for name in layer.replace("|", ":").split(":")
    }
    top = {path.stem for path in (ROOT / PACKAGE).glob("*.py")} | {
        path.parent.name for path in (ROOT / PACKAGE).glob("*/__init__.py")
    }
    return sorted(top - layered - {"__init__", "__main__"})


def count() -> dict[str, object]:
    cross: list[str] = []
    core: collections.Counter[str] = collections.Counter()
    getattrs: collections.Counter[str] = collections.Counter()
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        name = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, imported in imported_modules(tree, name, path.name == "__init__.py"):
            if not imported.startswith(PACKAGE + "."):
                continue
            owner = private_owner(imported)
            if owner is None or name == owner or name.startswith(owner + "."):
                if owner == PACKAGE and subpackage(name) != PACKAGE:
                    core[imported.split(".")[1]] += 1
                continue
            cross.append(f"{path.relative_to(ROOT)}:{line}: {imported}")
        for node in ast.walk(tree):
            called = node.func if isinstance(node, ast.Call) else None
            if isinstance(called, ast.Name) and called.id in ("getattr", "hasattr"):
                getattrs[subpackage(name).removeprefix(PACKAGE).lstrip(".") or "(top-level modules)"] += 1
    return {
        "private_imports_across_packages": len(cross),
        "cross": cross,
        "core_private_imports_from_subpackages": dict(sorted(core.items())),
        "getattr_calls": dict(sorted(getattrs.items())),
        "not_in_a_layer": unlayered(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    counts = count()
    if parser.parse_args().json:
        print(json.dumps(counts, indent=2))
    else:
        print(f"imports of another package's underscore modules: {counts['private_imports_across_packages']}")
        for line in counts["cross"]:  # type: ignore[attr-defined]
            print(f"  {line}")
        core = counts["core_private_imports_from_subpackages"]
        print(f"imports of the top package's underscore modules from subpackages: {sum(core.values())} {core}")  # type: ignore[attr-defined]
        print(f"getattr/hasattr calls per package: {counts['getattr_calls']}")
        print(f"top-level modules in no layer of the import-linter contract: {counts['not_in_a_layer']}")
    return 1 if counts["private_imports_across_packages"] or counts["not_in_a_layer"] else 0


if __name__ == "__main__":
    sys.exit(main())
