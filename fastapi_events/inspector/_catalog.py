"""The event catalog: every event name seen or registered, the patterns handled, and their payload schemas.

Schemas come from the payload-schema registry and from pydantic models defining ``__event_name__`` (the models
``dispatch(Model(...))`` takes), found among the loaded ``BaseModel`` subclasses.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._names import event_name_str
from ..handlers.local import Registration
from ..registry.payload_schema import registry as default_registry
from ._components import local_handlers

_WILDCARDS = frozenset("*?[")


def is_pattern(name: str) -> bool:
    return not _WILDCARDS.isdisjoint(name)


@dataclass
class Entry:
    name: str
    pattern: bool
    seen: int = 0
    registered: bool = False  # a handler registration or a payload schema names it
    model: type | None = None
    registrations: list[Registration] = field(default_factory=list)


def _subclasses(cls: type) -> Iterator[type]:
    stack: list[type] = list(cls.__subclasses__())
    visited: set[type] = set()
    while stack:
        sub = stack.pop()
        if sub in visited:
            continue
        visited.add(sub)
        yield sub
        stack.extend(sub.__subclasses__())


def event_models() -> dict[str, type]:
    """``__event_name__`` -> model, for every loaded pydantic model that names its event."""
    try:
        from pydantic import BaseModel
    except ImportError:  # pragma: no cover - Starlette-only installs
        return {}
    found: dict[str, type] = {}
    for model in _subclasses(BaseModel):
        name = model.__dict__.get("__event_name__")
        if name is not None and not model.__dict__.get("__pydantic_generic_metadata__", {}).get("origin"):
            found.setdefault(event_name_str(name), model)
    return found


def entries(seen: Mapping[str, int]) -> list[Entry]:
    """Every known event name and handled pattern, sorted, with what handles it and its schema model."""
    by_name: dict[str, Entry] = {}

    def entry(name: str) -> Entry:
        found = by_name.get(name)
        if found is None:
            found = by_name[name] = Entry(name, is_pattern(name))
        return found

    for name, count in list(seen.items()):
        entry(name).seen = count
    for name, model in event_models().items():
        entry(name).model = model
    for name, model in list(default_registry.data.items()):
        item = entry(name)
        item.model, item.registered = model, True
    registrations = [r for handler in local_handlers() for r in handler.registrations]
    for registration in registrations:
        entry(registration.pattern).registered = True
    for item in by_name.values():
        item.registrations = [r for r in registrations if r.regex.match(item.name) or r.pattern == item.name]
    return sorted(by_name.values(), key=lambda e: (e.pattern, e.name))


# Generating a schema walks the whole model; the page asks again every few seconds. Classes do not change.
_schemas: weakref.WeakKeyDictionary[type, dict[str | None, dict[str, Any]]] = weakref.WeakKeyDictionary()


def json_schema(model: type | None, ref_template: str | None = None) -> dict[str, Any] | None:
    """The model's JSON schema (a fresh copy: callers may change it), ``None`` without a pydantic model."""
    method = getattr(model, "model_json_schema", None)  # the user's model: pydantic v2 has it, others not
    if model is None or method is None:
        return None
    by_template = _schemas.setdefault(model, {})
    schema = by_template.get(ref_template)
    if schema is None:
        try:
            schema = method() if ref_template is None else method(ref_template=ref_template)
        except Exception as exc:  # e.g. not rebuilt yet: say so instead of failing the page, and try again later
            return {"description": f"no JSON schema: {type(exc).__name__}: {exc}"}
        by_template[ref_template] = schema
    return copy.deepcopy(schema)


def catalog_view(seen: Mapping[str, int]) -> dict[str, Any]:
    """``GET /api/catalog``."""
    return {
        "events": [
            {
                "name": item.name,
                "pattern": item.pattern,
                "seen": item.seen,
                "registered": item.registered,
                "handlers": [r.name for r in item.registrations],
                "model": None if item.model is None else f"{item.model.__module__}.{item.model.__qualname__}",
                "schema": json_schema(item.model),
            }
            for item in entries(seen)
        ]
    }


__all__ = ["Entry", "catalog_view", "entries", "event_models", "is_pattern", "json_schema"]
