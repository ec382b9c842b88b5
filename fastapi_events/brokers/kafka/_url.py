"""Consumer URL of the Kafka broker."""

from __future__ import annotations

from urllib.parse import urlsplit

from ...consumer import Source
from ...errors import ConfigurationError
from .._registry import path_parts, query, reject_unknown

SCHEMES = ("kafka",)
#: The URL form and its options, for ``consume --help``.
USAGE = (
    "kafka://HOST:PORT/TOPIC?group=G            dead letters: TOPIC.dlq (or &dlq=TOPIC); &ordering=key|partition;\n"
    "                                             librdkafka settings too, e.g. &session.timeout.ms=10000"
)


def source_from_url(url: str) -> Source:
    """``kafka://HOST:PORT[,HOST:PORT...]/TOPIC?group=G[&dlq=TOPIC][&ordering=key|partition][&<librdkafka option>=V]``.

    ``ordering=key`` (default) handles messages of one key in order and different keys concurrently;
    ``partition`` handles each partition strictly one message at a time.
    """
    from . import KafkaSource

    parts = urlsplit(url)
    topic = "/".join(path_parts(url))
    if not parts.netloc or not topic:
        raise ConfigurationError(f"{url}: expected kafka://HOST:PORT/TOPIC?group=G")
    options = query(url)
    group = options.pop("group", "fastapi-events")
    dlq = options.pop("dlq", None)
    ordering = options.pop("ordering", "key")
    if ordering not in ("key", "partition"):
        raise ConfigurationError(f"{url}: ordering must be 'key' or 'partition', not {ordering!r}")
    # Dotted names are librdkafka settings (session.timeout.ms=6000, security.protocol=SSL ...).
    config = {k: v for k, v in options.items() if "." in k}
    for key in config:
        del options[key]
    reject_unknown(options, url)
    return KafkaSource(parts.netloc, topic, group=group, dead_letter_topic=dlq, config=config, ordering=ordering)
