"""docs/contracts.md, the contributors' map of the internal interfaces, names only what the code has.

Checked: every file path it names exists; every ``fastapi_events.`` dotted name imports; each class it shows in a
code block exists in the module its section names, with each member shown (same name, sync or async, same
parameters); each ``Class.member`` and each ``Name(params)`` of the prose exists with those parameters. Names of
other libraries and brokers are listed in ``FOREIGN``.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "contracts.md"
PACKAGE = ROOT / "fastapi_events"

# Named in the prose, defined elsewhere: Python, Starlette, the brokers' error codes.
FOREIGN = {
    "Enum",
    "TypeError",
    "TestClient",
    "AsyncSession",
    "Protocol",
    "QueueDoesNotExist",
    "NOT_FOUND",
    "PERMISSION_DENIED",
    "NOAUTH",
    "NOPERM",
    "READONLY",
    "DELIVERED",  # ``Verdict.DELIVERED | RETRY | DEAD``: members, checked through ``Verdict``
    "RETRY",
    "DEAD",
    "PERMANENT",
}


TREES = {path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(PACKAGE.rglob("*.py"))}


@dataclass
class ClassInfo:
    path: Path
    members: dict[str, ast.AST] = field(default_factory=dict)  # name -> def node, or the annotation / assignment
    bases: list[str] = field(default_factory=list)


def _classes() -> dict[str, list[ClassInfo]]:
    found: dict[str, list[ClassInfo]] = defaultdict(list)
    for path, tree in TREES.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            info = ClassInfo(path, bases=[ast.unparse(base).rpartition(".")[2] for base in node.bases])
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    info.members.setdefault(item.name, item)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    info.members[item.target.id] = item
                elif isinstance(item, ast.Assign):
                    info.members.update((t.id, item) for t in item.targets if isinstance(t, ast.Name))
            for sub in ast.walk(node):  # instance attributes: ``self.name = ...`` in its methods
                target = sub.target if isinstance(sub, ast.AnnAssign) else None
                targets = sub.targets if isinstance(sub, ast.Assign) else [target] if target is not None else []
                for t in targets:
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                        info.members.setdefault(t.attr, sub)
            found[node.name].append(info)
    return found


CLASSES = _classes()


def _names() -> set[str]:
    """Every function, class and module-level name the package defines."""
    names: set[str] = set(CLASSES)
    for tree in TREES.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return names


NAMES = _names()


def _member(cls: str, name: str) -> ast.AST | None:
    """``name`` on a class called ``cls`` or one of its bases (within the package)."""
    for info in CLASSES.get(cls, []):
        if name in info.members:
            return info.members[name]
        for base in info.bases:
            if base != cls and (found := _member(base, name)) is not None:
                return found
    return None


def _parameters(node: ast.AST | None) -> list[str] | None:
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    args = node.args
    names = [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]
    names += [f"*{args.vararg.arg}"] if args.vararg else []
    names += [f"**{args.kwarg.arg}"] if args.kwarg else []
    return [n for n in names if n not in ("self", "cls")]


def _signatures(name: str) -> list[list[str]]:
    """What each ``Name(...)`` of the package takes: a class's ``__init__`` parameters or dataclass fields, a
    function's parameters (several functions may share a name)."""
    found = []
    for info in CLASSES.get(name, []):
        init = _member(name, "__init__")
        if init is not None:
            found.append(_parameters(init) or [])
        else:
            found.append([m for m, node in info.members.items() if isinstance(node, ast.AnnAssign) and node.simple])
    for tree in TREES.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
                found.append(_parameters(node) or [])
    return found


TEXT = DOC.read_text(encoding="utf-8")
BLOCKS = [(m.start(), m.group(1)) for m in re.finditer(r"```python\n(.*?)```", TEXT, re.S)]
SPANS = [m.group(1) for m in re.finditer(r"`([^`\n]+)`", re.sub(r"```.*?```", "", TEXT, flags=re.S))]


def test_named_files_exist() -> None:
    named = [m.groups() for span in SPANS if (m := re.fullmatch(r"([\w./]+\.(?:py|sh))(?:: (\w+))?", span))]
    assert named
    missing = []
    for name, defined in named:
        path = ROOT / name if (ROOT / name).exists() else PACKAGE / name
        if not path.exists():
            missing.append(name)
        elif defined and not re.search(rf"^\s*(async def|def|class) {defined}\b", path.read_text(), re.M):
            missing.append(f"{name}: {defined}")
    assert not missing, f"docs/contracts.md names files (or their functions) that do not exist: {missing}"


def test_dotted_names_import() -> None:
    dotted = {m.group(0) for span in SPANS for m in re.finditer(r"fastapi_events(\.\w+)+", span)}
    assert dotted
    missing = []
    for name in sorted(dotted):
        module, _, attribute = name, "", ""
        while True:
            try:
                found: object = importlib.import_module(module)
                break
            except ModuleNotFoundError:
                module, _, last = module.rpartition(".")
                attribute = f"{last}.{attribute}".strip(".")
        for part in filter(None, attribute.split(".")):
            if not hasattr(found, part):
                missing.append(name)
                break
            found = getattr(found, part)
    assert not missing, f"docs/contracts.md names what fastapi_events does not have: {missing}"


def test_prose_names_exist_with_their_parameters() -> None:
    wrong = []
    for span in SPANS:
        head = re.match(r"([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?(\(([^()]*)\))?", span)
        if head is None or span.startswith(("fastapi_events", "python ")) or "/" in span.split("(")[0]:
            continue
        name, member, call, params = head.groups()
        if name in FOREIGN or hasattr(builtins, name) or (name.islower() and member is None and call is None):
            continue  # a lone lowercase word is a value or a parameter, not a name of the code
        if member is not None:
            if name[0].isupper() and name in CLASSES:
                node = _member(name, member)
                if node is None and not (name == "Verdict" and member in FOREIGN):
                    wrong.append(f"{span}: {name} has no {member}")
                elif call is not None and params and (sig := _parameters(node)) is not None:
                    wrong += _check_params(span, params, sig)
            continue
        if name not in NAMES:
            wrong.append(f"{span}: no {name} in fastapi_events")
        elif call is not None and params:
            checked = [_check_params(span, params, sig) for sig in _signatures(name)]
            if checked and all(checked):
                wrong += checked[0]
    assert not wrong, "docs/contracts.md and the code disagree:\n" + "\n".join(wrong)


def _check_params(span: str, params: str, signature: list[str]) -> list[str]:
    named = [p.split("=")[0].split(":")[0].strip() for p in params.split(",")]
    if not all(re.fullmatch(r"\*{0,2}\w+", n) for n in named):
        return []  # an example call, not a signature
    unknown = [n for n in named if n not in signature]
    return [f"{span}: no parameter {unknown} (it takes {signature})"] if unknown else []


def _section_file(offset: int) -> str | None:
    """The module named in the heading of the section at ``offset`` of the page."""
    headings = [m for m in re.finditer(r"^## .*$", TEXT, re.M) if m.start() < offset]
    found = re.search(r"`(fastapi_events/[\w/]+\.py)`", headings[-1].group(0)) if headings else None
    return found.group(1) if found else None


@pytest.mark.parametrize("offset", [offset for offset, _ in BLOCKS], ids=lambda o: f"block@{o}")
def test_code_blocks_show_classes_as_they_are(offset: int) -> None:
    block = dict(BLOCKS)[offset]
    section = _section_file(offset)
    shown = [node for node in ast.parse(block).body if isinstance(node, ast.ClassDef)]
    assert shown
    wrong = []
    for cls in shown:
        candidates = [c for c in CLASSES.get(cls.name, []) if section is None or c.path == ROOT / section]
        if not candidates:
            wrong.append(f"class {cls.name}: not in {section or 'fastapi_events'}")
            continue
        for item in cls.body:
            names: list[str] = []
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef | ast.AnnAssign):
                names = [item.name if not isinstance(item, ast.AnnAssign) else ast.unparse(item.target)]
            elif isinstance(item, ast.Expr) and isinstance(item.value, ast.Tuple | ast.Name):  # enum members
                names = [ast.unparse(e) for e in getattr(item.value, "elts", [item.value])]
            for name in names:
                real = _member(cls.name, name)
                if real is None:
                    wrong.append(f"{cls.name}.{name}: not in the code")
                elif isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    if type(real) is not type(item):
                        wrong.append(f"{cls.name}.{name}: async in one, not in the other")
                    elif _parameters(real) != _parameters(item):
                        wrong.append(f"{cls.name}.{name}{_parameters(item)}: the code has {_parameters(real)}")
    assert not wrong, "docs/contracts.md shows classes unlike the code:\n" + "\n".join(wrong)
