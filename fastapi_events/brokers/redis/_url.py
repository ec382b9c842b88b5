"""Consumer URL of the Redis Streams broker."""

from __future__ import annotations

from urllib.parse import urlsplit

from ...consumer import Source
from ...errors import ConfigurationError
from .._registry import path_parts, query, reject_unknown, take_float

SCHEMES = ("redis", "rediss")
#: The URL form and its options, for ``consume --help``.
USAGE = "redis://HOST:PORT/DB/STREAM?group=G        dead letters: STREAM.dlq (or &dlq=STREAM); &claim_idle=SECONDS"


def stream_location(url: str, usage: str = "") -> tuple[str, str]:
    """``redis://[USER:PASSWORD@]HOST:PORT/DB/STREAM`` -> (``redis://...HOST:PORT/DB``, ``STREAM``); DB default 0."""
    parts = urlsplit(url)
    path = path_parts(url)
    db = "0"
    if path and path[0].isdigit():
        db, path = path[0], path[1:]
    stream = "/".join(path)
    if parts.scheme not in SCHEMES or not parts.netloc or not stream:
        raise ConfigurationError(f"{url}: expected redis://HOST:PORT/DB/STREAM{usage}")
    return f"{parts.scheme}://{parts.netloc}/{db}", stream


def source_from_url(url: str) -> Source:
    """``redis://[USER:PASSWORD@]HOST:PORT/DB/STREAM?group=G[&consumer=NAME][&claim_idle=S][&dlq=STREAM]``."""
    from . import RedisStreamSource

    server, stream = stream_location(url, "?group=G")
    options = query(url)
    group = options.pop("group", "fastapi-events")
    consumer = options.pop("consumer", None)
    dlq = options.pop("dlq", None)
    claim_idle = take_float(options, "claim_idle", url)
    reject_unknown(options, url)
    return RedisStreamSource(
        server,
        stream,
        group=group,
        consumer=consumer,
        dead_letter_stream=dlq,
        claim_idle=60.0 if claim_idle is None else claim_idle,
    )
