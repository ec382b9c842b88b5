"""Which broker reads a consumer URL: found by scheme among the packages of :mod:`fastapi_events.brokers`.

A broker package that can be consumed from has a ``_url`` module with ``SCHEMES`` (a tuple of URL schemes),
``source_from_url(url) -> Source`` and, when a ``consume`` process can use it, ``USAGE`` (its line in
``consume --help``); nothing else has to be told about it. Those modules import their broker's SDK only when a
source is built, so installing one extra is enough; they parse their URL with the helpers at the end of this
module.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import ConfigurationError

if TYPE_CHECKING:  # the consumer package imports this module
    from ..consumer import Source

    SourceFactory = Callable[[str], Source]


@functools.cache
def _url_modules() -> tuple[ModuleType, ...]:
    package = __name__.rpartition(".")[0]
    found = []
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        name = f"{package}.{info.name}._url"
        if info.ispkg and importlib.util.find_spec(name) is not None:
            found.append(importlib.import_module(name))
    return tuple(found)


@functools.cache
def _factories() -> dict[str, SourceFactory]:
    return {scheme: module.source_from_url for module in _url_modules() for scheme in module.SCHEMES}


def usage() -> list[str]:
    """One help entry per broker a ``consume`` process can read (``USAGE`` of its ``_url`` module), sorted."""
    return sorted(module.USAGE for module in _url_modules() if hasattr(module, "USAGE"))


def schemes() -> tuple[str, ...]:
    """The URL schemes a consumer can read, sorted."""
    return tuple(sorted(_factories()))


def source_from_url(url: str) -> Source:
    """Build the :class:`Source` a consumer URL describes (raises ``ConfigurationError`` when it is wrong)."""
    scheme = urlsplit(url).scheme
    factory = _factories().get(scheme)
    if factory is None:
        raise ConfigurationError(f"{url}: unsupported scheme {scheme!r}; expected one of {', '.join(schemes())}")
    return factory(url)


# -- parsing helpers of the brokers' ``_url`` modules ---------------------------------------------------------


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def take_float(options: dict[str, str], name: str, url: str) -> float | None:
    raw = options.pop(name, None)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{url}: {name}={raw!r} is not a number") from None


def reject_unknown(options: dict[str, str], url: str) -> None:
    if options:
        raise ConfigurationError(f"{url}: unknown option(s) {', '.join(sorted(options))}")


def path_parts(url: str) -> list[str]:
    return [unquote(part) for part in urlsplit(url).path.split("/") if part]


__all__ = ["path_parts", "query", "reject_unknown", "schemes", "source_from_url", "take_float", "usage"]
