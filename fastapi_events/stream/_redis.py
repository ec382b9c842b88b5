"""Fan-out across processes: every process XADDs its events to one Redis stream and XREADs all of them back.

The stream is the history: entries are trimmed with ``MAXLEN ~`` to about the history size, and an SSE id is
the entry id, so a client resumes on any process and after restarts. Entries use the forwarders' format (field
``body`` = ``["event name", payload]``), so the consumer CLI can read a live stream too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..brokers.redis import BODY_FIELD, stream_location
from ..codec import ATTR_EVENT_NAME, decode_event, encode_payload
from ..errors import MalformedMessageError
from ._entry import StreamEvent, parse_key
from ._hub import Hub

logger = logging.getLogger("fastapi_events.stream")

#: XREAD blocks at most this long (ms) so that a stop is noticed even on an idle stream.
BLOCK_MS = 1000
READ_COUNT = 1000
MAX_BACKOFF = 2.0
STOP_TIMEOUT = 5.0
#: Pauses before the retries of a failed XADD round trip (then the last try's error is reported).
PUBLISH_RETRY_DELAYS = (0.0, 0.2, 0.5)


class RedisFeed:
    """Writes this process' events to ``url``'s stream; reads every process' events into ``hub``, in stream order."""

    def __init__(self, url: str, hub: Hub, history: int) -> None:
        self.server_url, self.stream = stream_location(url)
        self.hub = hub
        self.maxlen = max(history, 1)
        self._writer: aioredis.Redis | None = None
        self._reader: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._last_id = "0-0"

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the stream's tail as history and start reading; idempotent, waits for a start in progress."""
        loop = asyncio.get_running_loop()
        if self._ready is not None and self._ready.get_loop() is loop and (self._task is None or not self._task.done()):
            await asyncio.shield(self._ready)
            return
        self._ready = ready = loop.create_future()
        try:
            self._writer = aioredis.from_url(self.server_url)
            self._reader = aioredis.from_url(self.server_url)
            await self._load_tail()
        except BaseException as exc:
            ready.set_exception(exc)
            ready.exception()  # retrieved: the next start() tries again
            self._ready = None
            await self.stop()
            raise
        ready.set_result(None)
        self._task = loop.create_task(self._read_forever(), name=f"EventStream reader {self.stream}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.get_loop().is_closed():
            task.cancel()
            await asyncio.wait([task], timeout=STOP_TIMEOUT)
        self._ready = None
        for client in (self._writer, self._reader):
            if client is not None:
                # Closing a dead connection may fail or wait for a server that is gone: shutdown must not hang.
                with contextlib.suppress(RedisError, OSError, RuntimeError, asyncio.TimeoutError):
                    await asyncio.wait_for(client.aclose(), STOP_TIMEOUT)
        self._writer = self._reader = None

    # -- writing --------------------------------------------------------------------------------------------------

    async def publish(self, encoded: Sequence[tuple[str, bytes]]) -> None:
        if self._writer is None:
            await self.start()
        for delay in PUBLISH_RETRY_DELAYS:
            try:
                await self._xadd(encoded)
                return
            except (RedisConnectionError, RedisTimeoutError):
                # A pooled connection that died with a Redis restart fails on first use, and a restarted Redis
                # answers LOADING for a moment; the pool reconnects for the next try. (A reply lost after Redis
                # applied the XADDs would duplicate them; a dead socket applies none.)
                await asyncio.sleep(delay)
        await self._xadd(encoded)

    async def _xadd(self, encoded: Sequence[tuple[str, bytes]]) -> None:
        assert self._writer is not None
        # No MULTI: entries are independent; one pipeline keeps them in order in one round trip.
        async with self._writer.pipeline(transaction=False) as pipe:
            for name, data in encoded:
                fields: dict[Any, Any] = {ATTR_EVENT_NAME: name, BODY_FIELD: _body(name, data)}
                pipe.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)
            await pipe.execute()

    # -- reading --------------------------------------------------------------------------------------------------

    async def _load_tail(self) -> None:
        assert self._reader is not None
        # One more than the history: when the stream holds more, that extra one marks where the gap begins.
        rows: Any = await self._reader.xrevrange(self.stream, "+", "-", count=self.maxlen + 1)
        rows.reverse()
        evicted = None
        if len(rows) > self.maxlen:
            evicted = parse_key(rows[0][0].decode())
            rows = rows[1:]
        self.hub.seed([entry for entry in map(_entry, rows) if entry is not None], evicted)
        if rows:
            self._last_id = rows[-1][0].decode()
        elif evicted is not None:  # pragma: no cover - maxlen >= 1 keeps at least one row
            self._last_id = f"{evicted[0]}-{evicted[1]}"

    async def _read_forever(self) -> None:
        backoff = 0.1
        while True:
            assert self._reader is not None
            try:
                reply: Any = await self._reader.xread({self.stream: self._last_id}, count=READ_COUNT, block=BLOCK_MS)
            except (RedisError, OSError) as exc:
                logger.warning("reading Redis stream %r failed (%s); retrying", self.stream, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            except Exception:  # a bug must not silently stop every subscriber of this process
                logger.exception("reading Redis stream %r failed; retrying", self.stream)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 0.1
            for _stream, rows in reply or ():
                if rows:
                    self._last_id = rows[-1][0].decode()
                    self.hub.publish([entry for entry in map(_entry, rows) if entry is not None])


def _body(name: str, data: bytes) -> bytes:
    # Exactly what codec.encode_event produces for (name, payload), without encoding the payload twice.
    return b"[%s,%s]" % (json.dumps(name, ensure_ascii=False).encode(), data)


def _entry(row: tuple[bytes, dict[bytes, bytes]]) -> StreamEvent | None:
    raw_id, fields = row
    entry_id = raw_id.decode()
    key = parse_key(entry_id)
    body = fields.get(BODY_FIELD)
    name_field = fields.get(ATTR_EVENT_NAME.encode())
    try:
        if key is None or body is None:
            raise MalformedMessageError("entry has no body field")
        if name_field is not None and (b"\n" in name_field or b"\r" in name_field):
            raise MalformedMessageError("event name contains a line break")
        if name_field is not None:
            name = name_field.decode()
            prefix = b"[%s," % json.dumps(name, ensure_ascii=False).encode()
            if body.startswith(prefix) and body.endswith(b"]"):
                return StreamEvent(key, entry_id, name, body[len(prefix) : -1])
        event_name, payload = decode_event(body)
        name = str(event_name)
        if "\n" in name or "\r" in name:
            raise MalformedMessageError("event name contains a line break")
        return StreamEvent(key, entry_id, name, encode_payload(payload), payload)
    except (MalformedMessageError, UnicodeDecodeError, TypeError, ValueError) as exc:
        # Written by something else: skip it, everything else still flows.
        logger.warning("skipping Redis stream entry %s: %s", entry_id, exc)
        return None


__all__ = ["RedisFeed"]
