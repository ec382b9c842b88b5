"""Redis Streams (``pip install "fastapi-events[redis]"``): forwarder, transport, consumer source."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports

# isort: split
# The internal face: what the other packages of fastapi_events may use. Not public API: no stability promise.
from ._fields import BODY_FIELD as BODY_FIELD
from ._url import stream_location as stream_location

if TYPE_CHECKING:
    from ._forwarder import RedisStreamForwardHandler
    from ._source import RedisStreamSource
    from ._transport import RedisStreamTransport

# Every name needs the SDK: looking one up without it raises an ImportError naming the extra.
__getattr__ = lazy_exports(
    __name__,
    {
        "._forwarder": ("RedisStreamForwardHandler",),
        "._source": ("RedisStreamSource",),
        "._transport": ("RedisStreamTransport",),
    },
    requires=("redis", "redis"),
)

__all__ = ["RedisStreamForwardHandler", "RedisStreamSource", "RedisStreamTransport"]
