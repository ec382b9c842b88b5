"""Module-level ``__getattr__`` for packages whose exports would import a broker SDK.

``import fastapi_events`` (or ``fastapi_events.brokers.kafka``) must not import confluent-kafka, boto3,
google-cloud-pubsub or redis: a name is imported from its module the first time it is looked up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """Return a ``__getattr__`` resolving ``exports[name]`` (a module path relative to ``package``)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, package), name)

    return __getattr__


__all__ = ["lazy_exports"]
