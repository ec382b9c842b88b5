"""The error a user sees when a feature's optional dependency (an "extra") is not installed."""

from __future__ import annotations

import importlib
import sys


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


__all__ = ["require_extra"]
