"""Consumer URLs: ``kafka://``, ``redis://``, ``sqs://``, ``pubsub://`` -> a configured :class:`Source`.

Broker client libraries are imported only for the scheme used, so installing one extra is enough.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import ConfigurationError
from .source import Source

SCHEMES = ("kafka", "redis", "rediss", "sqs", "pubsub")


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def _take_float(options: dict[str, str], name: str, url: str) -> float | None:
    raw = options.pop(name, None)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{url}: {name}={raw!r} is not a number") from None


def _reject_unknown(options: dict[str, str], url: str) -> None:
    if options:
        raise ConfigurationError(f"{url}: unknown option(s) {', '.join(sorted(options))}")


def _path_parts(url: str) -> list[str]:
    return [unquote(part) for part in urlsplit(url).path.split("/") if part]


def kafka_source(url: str) -> Source:
    """``kafka://HOST:PORT[,HOST:PORT...]/TOPIC?group=G[&dlq=TOPIC][&ordering=key|partition][&<librdkafka option>=V]``.

    ``ordering=key`` (default) handles messages of one key in order and different keys concurrently;
    ``partition`` handles each partition strictly one message at a time.
    """
    from ..brokers.kafka.subscriber import KafkaSource

    parts = urlsplit(url)
    topic = "/".join(_path_parts(url))
    if not parts.netloc or not topic:
        raise ConfigurationError(f"{url}: expected kafka://HOST:PORT/TOPIC?group=G")
    options = _query(url)
    group = options.pop("group", "fastapi-events")
    dlq = options.pop("dlq", None)
    ordering = options.pop("ordering", "key")
    if ordering not in ("key", "partition"):
        raise ConfigurationError(f"{url}: ordering must be 'key' or 'partition', not {ordering!r}")
    # Dotted names are librdkafka settings (session.timeout.ms=6000, security.protocol=SSL ...).
    config = {k: v for k, v in options.items() if "." in k}
    for key in config:
        del options[key]
    _reject_unknown(options, url)
    return KafkaSource(parts.netloc, topic, group=group, dead_letter_topic=dlq, config=config, ordering=ordering)


def redis_stream_location(url: str, usage: str = "") -> tuple[str, str]:
    """``redis://[USER:PASSWORD@]HOST:PORT/DB/STREAM`` -> (``redis://...HOST:PORT/DB``, ``STREAM``); DB default 0."""
    parts = urlsplit(url)
    path = _path_parts(url)
    db = "0"
    if path and path[0].isdigit():
        db, path = path[0], path[1:]
    stream = "/".join(path)
    if parts.scheme not in ("redis", "rediss") or not parts.netloc or not stream:
        raise ConfigurationError(f"{url}: expected redis://HOST:PORT/DB/STREAM{usage}")
    return f"{parts.scheme}://{parts.netloc}/{db}", stream


def redis_source(url: str) -> Source:
    """``redis://[USER:PASSWORD@]HOST:PORT/DB/STREAM?group=G[&consumer=NAME][&claim_idle=S][&dlq=STREAM]``."""
    from ..brokers.redis.subscriber import RedisStreamSource

    server, stream = redis_stream_location(url, "?group=G")
    options = _query(url)
    group = options.pop("group", "fastapi-events")
    consumer = options.pop("consumer", None)
    dlq = options.pop("dlq", None)
    claim_idle = _take_float(options, "claim_idle", url)
    _reject_unknown(options, url)
    return RedisStreamSource(
        server,
        stream,
        group=group,
        consumer=consumer,
        dead_letter_stream=dlq,
        claim_idle=60.0 if claim_idle is None else claim_idle,
    )


def sqs_source(url: str) -> Source:
    """``sqs://QUEUE_NAME?region=R&endpoint_url=U[&dlq=NAME][&visibility_timeout=S]``.

    Region and endpoint default to ``AWS_DEFAULT_REGION``/``AWS_REGION`` and ``AWS_ENDPOINT_URL_SQS``/
    ``AWS_ENDPOINT_URL``.
    """
    from ..brokers.sqs.subscriber import SQSSource

    parts = urlsplit(url)
    queue = unquote(parts.netloc) + "".join("/" + p for p in _path_parts(url))
    if not queue:
        raise ConfigurationError(f"{url}: expected sqs://QUEUE_NAME")
    options = _query(url)
    region = options.pop("region", None) or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    endpoint = (
        options.pop("endpoint_url", None)
        or os.environ.get("AWS_ENDPOINT_URL_SQS")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    dlq = options.pop("dlq", None)
    visibility = _take_float(options, "visibility_timeout", url)
    _reject_unknown(options, url)
    source: Source = SQSSource(
        queue,
        region=region,
        endpoint_url=endpoint,
        dead_letter_queue=dlq,
        visibility_timeout=None if visibility is None else int(visibility),
    )
    return source


def pubsub_source(url: str) -> Source:
    """``pubsub://PROJECT/SUBSCRIPTION[?dlq_topic=TOPIC]`` (``PUBSUB_EMULATOR_HOST`` is honoured)."""
    from ..brokers.pubsub.subscriber import PubSubSource

    parts = urlsplit(url)
    path = _path_parts(url)
    if not parts.netloc or len(path) != 1:
        raise ConfigurationError(f"{url}: expected pubsub://PROJECT/SUBSCRIPTION")
    options = _query(url)
    dlq = options.pop("dlq_topic", None)
    _reject_unknown(options, url)
    source: Source = PubSubSource(unquote(parts.netloc), path[0], dead_letter_topic=dlq)
    return source


_FACTORIES: dict[str, Callable[[str], Source]] = {
    "kafka": kafka_source,
    "redis": redis_source,
    "rediss": redis_source,
    "sqs": sqs_source,
    "pubsub": pubsub_source,
}


def source_from_url(url: str) -> Source:
    """Build the :class:`Source` a consumer URL describes (raises ``ConfigurationError`` when it is wrong)."""
    scheme = urlsplit(url).scheme
    factory = _FACTORIES.get(scheme)
    if factory is None:
        raise ConfigurationError(f"{url}: unsupported scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    return factory(url)


__all__ = [
    "SCHEMES",
    "kafka_source",
    "pubsub_source",
    "redis_source",
    "redis_stream_location",
    "source_from_url",
    "sqs_source",
]
