"""Consumer URL of the Google Cloud Pub/Sub broker."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from ...consumer import Source
from ...errors import ConfigurationError
from .._registry import path_parts, query, reject_unknown

SCHEMES = ("pubsub",)
#: The URL form and its options, for ``consume --help``.
USAGE = "pubsub://PROJECT/SUBSCRIPTION              dead letters: SUBSCRIPTION-dlq (or &dlq_topic=TOPIC)"


def source_from_url(url: str) -> Source:
    """``pubsub://PROJECT/SUBSCRIPTION[?dlq_topic=TOPIC]`` (``PUBSUB_EMULATOR_HOST`` is honoured)."""
    from . import PubSubSource

    parts = urlsplit(url)
    path = path_parts(url)
    if not parts.netloc or len(path) != 1:
        raise ConfigurationError(f"{url}: expected pubsub://PROJECT/SUBSCRIPTION")
    options = query(url)
    dlq = options.pop("dlq_topic", None)
    reject_unknown(options, url)
    source: Source = PubSubSource(unquote(parts.netloc), path[0], dead_letter_topic=dlq)
    return source
