"""Module-level ``__getattr__`` for packages whose exports would import a broker SDK.

``import fastapi_events`` (or ``fastapi_events.brokers.kafka``) must not import confluent-kafka, boto3,
google-cloud-pubsub or redis: a name is imported from its module the first time it is looked up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._extras import require_extra


def lazy_exports(
    package: str, exports: Mapping[str, Iterable[str]], *, requires: tuple[str, str] | None = None
) -> Callable[[str], Any]:
    """Return a ``__getattr__`` resolving the names ``exports[module]`` from ``module`` (relative to ``package``).

    ``requires=(sdk_module, extra)``: looking a name up without the SDK installed raises an ``ImportError``
    naming ``pip install "fastapi-events[extra]"``.
    """

    modules = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if requires is not None:
            require_extra(*requires, owner=name)
        return getattr(importlib.import_module(module, package), name)

    return __getattr__


__all__ = ["lazy_exports"]
