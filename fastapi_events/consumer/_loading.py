"""Finding the user's ``LocalHandler`` from a ``module:attribute`` reference (as uvicorn finds apps)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import cast

from ..errors import ConfigurationError
from ..handlers.local import LocalHandler
from ._runner import Deserializer


def load_object(reference: str, option: str = "--handlers") -> object:
    """Import ``module:attribute`` (attribute may be dotted) and return the attribute."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(f"{option} {reference!r}: expected module:attribute, e.g. myapp.events:handler")
    # Like ``python -m``/uvicorn: the current directory is importable even when started through a script.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigurationError(f"{option} {reference!r}: module {module_name!r} not found") from exc
        raise
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(f"{option} {reference!r}: {part!r} not found in {target!r}") from None
    return target


def load_handler(reference: str) -> LocalHandler:
    """Import ``module:attribute``; it must be a ``LocalHandler``."""
    target = load_object(reference)
    if not isinstance(target, LocalHandler):
        raise ConfigurationError(
            f"--handlers {reference!r} is a {type(target).__name__}, expected a fastapi_events LocalHandler"
        )
    return target


def load_deserializer(reference: str) -> Deserializer:
    """Import ``module:attribute``: a ``deserializer(body, attributes) -> (event_name, payload)`` callable."""
    target = load_object(reference, "--deserializer")
    if not callable(target):
        raise ConfigurationError(f"--deserializer {reference!r} is a {type(target).__name__}, not a callable")
    return cast(Deserializer, target)


def load_handlers(references: Sequence[str]) -> LocalHandler:
    """One ``LocalHandler`` running the registrations of every reference, in the order given."""
    handlers = [load_handler(reference) for reference in references]
    if len(handlers) == 1:
        return handlers[0]
    combined = LocalHandler()
    for handler in handlers:
        for registration in handler.registrations:
            combined.register(registration.func, event_name=registration.pattern)
    return combined


__all__ = ["load_deserializer", "load_handler", "load_handlers", "load_object"]
