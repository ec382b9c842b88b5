"""``RedisStreamForwardHandler``: forward events to a Redis stream (extra ``fastapi-events[redis]``)."""

from __future__ import annotations

import os
from typing import Any

from ...delivery import ForwardHandler
from ._transport import RedisStreamTransport


class RedisStreamForwardHandler(ForwardHandler):
    """Adds every event to ``stream`` (XADD, approximate ``maxlen`` trimming), never blocking the request.

    Batching, retries, the durable ``spool_path`` and dead letters are the shared delivery layer's (see
    :class:`~fastapi_events.delivery.ForwardHandler`, whose keyword options - ``retry``, ``on_dead_letter``,
    ``key``, ``serializer``, ... - are accepted too). Read the stream with
    ``python -m fastapi_events consume redis://HOST:PORT/DB/STREAM?group=G``.
    """

    def __init__(
        self,
        stream: str,
        url: str = "redis://localhost:6379/0",
        maxlen: int | None = None,
        spool_path: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(RedisStreamTransport(stream, url, maxlen=maxlen), spool_path=spool_path, **options)


__all__ = ["RedisStreamForwardHandler"]
