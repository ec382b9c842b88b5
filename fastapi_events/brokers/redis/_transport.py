"""Redis Streams :class:`~fastapi_events.delivery.Transport`: one pipelined round trip of XADDs per batch.

Each event becomes one stream entry: field ``body`` holds the codec's JSON, the other fields are the message
attributes (event name, event id, trace context) and ``key`` when the forwarder has a key function.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
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


# One round trip, one reply for a whole batch: the script XADDs every entry and answers only with the entries
# the server refused ({index, error, ...}), so a delivered batch costs one tiny reply to parse instead of one per
# entry. ARGV: maxlen ("" for none), then per entry its number of field/value pairs and the pairs.
_XADD_ALL = """
local stream, maxlen, i, refused, entry = KEYS[1], ARGV[1], 2, {}, 0
while i <= #ARGV do
  entry = entry + 1
  local pairs = tonumber(ARGV[i])
  local args = {stream}
  if maxlen ~= '' then args[#args + 1] = 'MAXLEN'; args[#args + 1] = '~'; args[#args + 1] = maxlen end
  args[#args + 1] = '*'
  for f = i + 1, i + 2 * pairs do args[#args + 1] = ARGV[f] end
  i = i + 1 + 2 * pairs
  local reply = redis.pcall('XADD', unpack(args))
  if type(reply) == 'table' and reply.err then
    refused[#refused + 1] = entry
    refused[#refused + 1] = reply.err
  end
end
return refused
"""
# The same, with the whole batch in one JSON argument, an entry as [attribute names, their values, body(, key)],
# decoded by the server: redis-py packs a command argument by argument in Python, which for 7 arguments an entry
# cost more than all the rest of forwarding it. Used when the bodies are text (the codec's JSON is); ARGV: maxlen,
# the JSON. The fields come in the order the other two ways send them.
_XADD_JSON = """
local stream, maxlen, refused = KEYS[1], ARGV[1], {}
local entries = cjson.decode(ARGV[2])
for entry = 1, #entries do
  local names, values, body, key = unpack(entries[entry])
  local args = {stream}
  if maxlen ~= '' then args[#args + 1] = 'MAXLEN'; args[#args + 1] = '~'; args[#args + 1] = maxlen end
  args[#args + 1] = '*'
  for f = 1, #names do args[#args + 1] = names[f]; args[#args + 1] = values[f] end
  if key then args[#args + 1] = 'key'; args[#args + 1] = key end
  args[#args + 1] = 'body'
  args[#args + 1] = body
  local reply = redis.pcall('XADD', unpack(args))
  if type(reply) == 'table' and reply.err then
    refused[#refused + 1] = entry
    refused[#refused + 1] = reply.err
  end
end
return refused
"""
# ensure_ascii=False: UTF-8 text goes as it is; cjson decodes the escapes JSON needs back to the same bytes.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
# Scripting refused (ACLs, a proxy without EVAL): the transport falls back to a pipeline of XADDs for good.
_NO_SCRIPTING_PREFIXES = ("NOPERM", "ERR unknown command", "NOSCRIPT")


class RedisUnavailableError(ConnectionError):
    """Every entry of a batch was refused for a reason that is about the server, not the entry."""


def stream_fields(message: OutboundMessage) -> dict[Any, Any]:
    fields: dict[Any, Any] = dict(message.attributes)
    if message.key is not None:
        fields[KEY_FIELD] = message.key
    fields[BODY_FIELD.decode()] = message.body
    return fields


def _as_text(message: OutboundMessage) -> list[Any]:
    """An entry of the JSON batch (see ``_XADD_JSON``); raises UnicodeDecodeError for a body that is not text."""
    attributes = message.attributes
    entry = [list(attributes), list(attributes.values()), message.body.decode("utf-8")]
    if message.key is not None:
        entry.append(message.key)
    return entry


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
        self._scripting = True  # until the server refuses scripts
        self._script: AsyncScript | None = None
        self._json_script: AsyncScript | None = None

    def message_size(self, message: OutboundMessage) -> int:
        size = len(message.body) + len(message.key or "")
        attributes = message.attributes
        return size + sum(map(len, attributes)) + sum(map(len, attributes.values()))  # no Python frame per field

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
        if self._scripting:
            self._script = client.register_script(_XADD_ALL)
            self._json_script = client.register_script(_XADD_JSON)

    async def send_batch(self, batch: Sequence[OutboundMessage]) -> Sequence[EntryResult]:
        if self._client is None:
            raise RuntimeError("RedisStreamTransport is not open")
        if self._loop is not asyncio.get_running_loop():
            await self.open()
            assert self._client is not None
        if self._script is not None:
            try:
                return await self._send_scripted(self._client, batch)
            except ResponseError as exc:
                if _unavailable(exc):
                    raise RedisUnavailableError(f"{self.destination}: {exc}") from exc
                if not str(exc).startswith(_NO_SCRIPTING_PREFIXES):
                    raise
                logger.info("Redis refuses Lua scripts (%s); XADD pipelines from now on", exc)
                self._script = self._json_script = None
                self._scripting = False
        return await self._send_pipelined(self._client, batch)

    async def _send_scripted(self, client: aioredis.Redis, batch: Sequence[OutboundMessage]) -> list[EntryResult]:
        assert self._script is not None
        assert self._json_script is not None
        maxlen = b"" if self.maxlen is None else self.maxlen
        try:
            blob = _JSON.encode([_as_text(message) for message in batch]).encode("utf-8")
        except (UnicodeDecodeError, UnicodeEncodeError):  # a body that is not UTF-8 text: one argument per field
            args: list[Any] = [maxlen]
            for message in batch:
                fields = stream_fields(message)
                args.append(len(fields))
                for name, value in fields.items():
                    args += (name, value)
            refused = await self._script(keys=[self.destination], args=args, client=client)
        else:
            refused = await self._json_script(keys=[self.destination], args=[maxlen, blob], client=client)
        results: list[EntryResult] = [DELIVERED] * len(batch)
        errors = [bytes(e).decode("utf-8", "replace") if isinstance(e, bytes) else str(e) for e in refused[1::2]]
        for index, error in zip(refused[0::2], errors, strict=True):
            results[int(index) - 1] = self._result(ResponseError(error))
        if len(errors) == len(batch) and all(_unavailable(ResponseError(error)) for error in errors):
            raise RedisUnavailableError(f"{self.destination}: {errors[0]}")
        return results

    async def _send_pipelined(self, client: aioredis.Redis, batch: Sequence[OutboundMessage]) -> list[EntryResult]:
        # No MULTI: entries are independent, and one refused entry must not take the others with it.
        async with client.pipeline(transaction=False) as pipe:
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
