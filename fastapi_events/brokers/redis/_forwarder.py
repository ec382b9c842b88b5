"""``RedisStreamForwardHandler``: forward events to a Redis stream (``pip install "fastapi-events[redis]"``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...delivery import ForwardHandler, split_options
from ._transport import RedisStreamTransport

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ...delivery import DeliveryKwargs


class RedisStreamForwardHandler(ForwardHandler):
    """Adds every event to ``stream`` (XADD, approximate ``maxlen`` trimming), never blocking the request.

    Takes the delivery options every forwarder takes (:class:`~fastapi_events.delivery.DeliveryOptions`:
    ``spool_path``, ``retry``, ``on_dead_letter``, ``key``, ``serializer``, ``flush_timeout``...) as keywords.
    Read the stream with ``python -m fastapi_events consume redis://HOST:PORT/DB/STREAM?group=G``.
    """

    def __init__(
        self,
        stream: str,
        url: str = "redis://localhost:6379/0",
        maxlen: int | None = None,
        **options: Unpack[DeliveryKwargs],
    ) -> None:
        delivery, _ = split_options(type(self).__name__, options)
        super().__init__(RedisStreamTransport(stream, url, maxlen=maxlen), delivery)


__all__ = ["RedisStreamForwardHandler"]
