"""Consumer URL of the in-memory broker: a topic of a live ``InMemoryBroker`` of this process."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from ...consumer import Source
from ...errors import ConfigurationError
from .._registry import path_parts, query, reject_unknown

SCHEMES = ("memory",)


def source_from_url(url: str) -> Source:
    """``memory://BROKER/TOPIC[?redelivers=1]``: BROKER is the name of an ``InMemoryBroker`` of this process."""
    from ._broker import InMemoryBroker

    parts = urlsplit(url)
    topic = "/".join(path_parts(url))
    if not parts.netloc or not topic:
        raise ConfigurationError(f"{url}: expected memory://BROKER/TOPIC")
    options = query(url)
    redelivers = options.pop("redelivers", "0") not in ("0", "false", "")
    reject_unknown(options, url)
    source: Source = InMemoryBroker.named(unquote(parts.netloc)).source(topic, redelivers=redelivers)
    return source
