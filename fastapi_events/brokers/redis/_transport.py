"""Redis Streams :class:`~fastapi_events.delivery.Transport`: one pipelined round trip of XADDs per batch.

Each event becomes one stream entry: field ``body`` holds the codec's JSON, the other fields are the message
attributes (event name, event id, trace context) and ``key`` when the forwarder has a key function.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ...delivery import DELIVERED, EntryResult, OutboundMessage, Outcome
from ._fields import BODY_FIELD, KEY_FIELD

logger = logging.getLogger("fastapi_events.redis")

# Redis refuses a bulk string over 512 MB; a stream entry that large would be a mistake anyway, and the
# delivery layer keeps oversize events out of batches rather than failing the batch.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Errors about the command itself (wrong key type, bad arguments): resending cannot help.
_PERMANENT_PREFIXES = ("WRONGTYPE", "ERR")
# Errors about the server or our access to it (auth or ACL changed, replica, loading, failover, out of memory):
# when every entry of a batch gets one, it is an outage - waited out without spending the retry budget.
_UNAVAILABLE_PREFIXES = ("NOAUTH", "WRONGPASS", "NOPERM", "LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "OOM")


class RedisUnavailableError(ConnectionError):
    """Every entry of a batch was refused for a reason that is about the server, not the entry."""


def stream_fields(message: OutboundMessage) -> dict[Any, Any]:
    fields: dict[Any, Any] = dict(message.attributes)
    if message.key is not None:
        fields[KEY_FIELD] = message.key
    fields[BODY_FIELD.decode()] = message.body
    return fields


class RedisStreamTransport:
    """XADDs to ``stream``; with ``maxlen`` the stream is trimmed to about that many entries (``MAXLEN ~``,
    which trims whole radix-tree nodes only and so costs nearly nothing)."""

    system = "redis"
    max_batch_count = 500
    max_batch_bytes = 16 * 1024 * 1024
    max_message_bytes = MAX_MESSAGE_BYTES

    def __init__(self, stream: str, url: str = "redis://localhost:6379/0", *, maxlen: int | None = None) -> None:
        self.destination = stream
        self.url = url
        self.maxlen = maxlen
        self._client: aioredis.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def message_size(self, message: OutboundMessage) -> int:
        size = len(message.body) + len(message.key or "")
        return size + sum(len(k) + len(v) for k, v in message.attributes.items())

    async def open(self) -> None:
        client = aioredis.from_url(self.url)
        try:
            await client.ping()
        except BaseException:
            await client.aclose()
            raise
        # A client's connections belong to the event loop that made them: an app running a loop per request
        # (TestClient without ``with``) gets a fresh client on each; the old loop is closed, so is its socket.
        self._client, self._loop = client, asyncio.get_running_loop()

    async def send_batch(self, batch: Sequence[OutboundMessage]) -> Sequence[EntryResult]:
        if self._client is None:
            raise RuntimeError("RedisStreamTransport is not open")
        if self._loop is not asyncio.get_running_loop():
            await self.open()
            assert self._client is not None
        # No MULTI: entries are independent, and one refused entry must not take the others with it.
        async with self._client.pipeline(transaction=False) as pipe:
            for message in batch:
                pipe.xadd(self.destination, stream_fields(message), maxlen=self.maxlen, approximate=True)
            replies = await pipe.execute(raise_on_error=False)
        if replies and all(_unavailable(reply) for reply in replies):
            raise RedisUnavailableError(f"{self.destination}: {replies[0]}")
        return [self._result(reply) for reply in replies]

    @staticmethod
    def _result(reply: object) -> EntryResult:
        if not isinstance(reply, Exception):
            return DELIVERED
        reason = f"{type(reply).__name__}: {reply}"
        if isinstance(reply, ResponseError) and str(reply).startswith(_PERMANENT_PREFIXES):
            return EntryResult(Outcome.PERMANENT, reason)
        return EntryResult(Outcome.RETRY, reason)  # OOM, LOADING, READONLY after a failover...

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            if self._loop is asyncio.get_running_loop():
                await client.aclose()


def _unavailable(reply: object) -> bool:
    return isinstance(reply, ResponseError) and str(reply).startswith(_UNAVAILABLE_PREFIXES)


__all__ = ["KEY_FIELD", "RedisStreamTransport", "RedisUnavailableError", "stream_fields"]
