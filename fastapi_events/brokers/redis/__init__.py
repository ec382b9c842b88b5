"""Redis Streams (``pip install "fastapi-events[redis]"``): forwarder, transport, consumer source."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports

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
