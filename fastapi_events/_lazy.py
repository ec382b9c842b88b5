"""Optional dependencies ("extras"): the error a user sees when one is missing, and lazy exports.

``import fastapi_events`` (or ``fastapi_events.brokers.kafka``) must not import confluent-kafka, boto3,
google-cloud-pubsub or redis: a package whose exports need one gets a module-level ``__getattr__`` from
:func:`lazy_exports`, which imports a name from its module the first time it is looked up.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def require_extra(module: str, extra: str, owner: str) -> None:
    """Raise ``ImportError`` naming the ``pip install`` line when ``module`` cannot be imported.

    Called before anything of ``owner`` is imported or started, so a missing SDK is one clear error at
    construction instead of a ``ModuleNotFoundError`` deep inside, or a forwarder that retries forever.
    """
    if sys.modules.get(module) is not None:
        return
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f'{owner} needs the {module} package, which is not installed: pip install "fastapi-events[{extra}]"',
            name=module,
        ) from exc


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


__all__ = ["lazy_exports", "require_extra"]
