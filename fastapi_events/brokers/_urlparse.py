"""Parsing helpers shared by the brokers' consumer URL modules (``<broker>/_url.py``)."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import ConfigurationError


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


__all__ = ["path_parts", "query", "reject_unknown", "take_float"]
