"""Redis Streams :class:`~fastapi_events.consumer.Source`: consumer groups, XACK after success, XAUTOCLAIM.

Every consumer process joins the group under a name of its own. Entries a dead consumer had read but not
acknowledged stay pending in the group; any live consumer claims them with XAUTOCLAIM once they were idle for
``claim_idle`` seconds, which is how a SIGKILL loses nothing. While this process works on an entry it
refreshes the entry's idle time, so a slow handler is not mistaken for a dead consumer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ... import _hooks
from ...consumer import Coalescer, Delivery, dead_letter_attributes
from ._fields import BODY_FIELD, KEY_FIELD

logger = logging.getLogger("fastapi_events.redis")

#: Seconds between two consumer lag reports (only made while someone observes lag, see ``_hooks``).
LAG_INTERVAL = 1.0


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class RedisStreamSource:
    """Reads ``stream`` as member ``consumer`` of consumer group ``group``."""

    system = "redis"
    redelivers = False

    def __init__(
        self,
        url: str,
        stream: str,
        *,
        group: str = "fastapi-events",
        consumer: str | None = None,
        dead_letter_stream: str | None = None,
        claim_idle: float = 60.0,
        block: float = 1.0,
        start_id: str = "0",
    ) -> None:
        self.url = url
        self.destination = stream
        self.group = group
        self.consumer = consumer or default_consumer_name()
        self.dead_letter_stream = dead_letter_stream or f"{stream}.dlq"
        self.claim_idle = claim_idle
        self.block = block
        self.start_id = start_id  # where a new group starts: "0" = everything already in the stream
        self._client: aioredis.Redis | None = None
        self._next_claim = 0.0
        self._next_lag_report = 0.0
        self._in_flight: set[bytes] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._acks: Coalescer[bytes] = Coalescer(self._xack)

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("RedisStreamSource is not open")
        return self._client

    async def open(self) -> None:
        client = aioredis.from_url(self.url)
        try:
            await client.xgroup_create(self.destination, self.group, id=self.start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                await client.aclose()
                raise
        except BaseException:
            await client.aclose()
            raise
        self._client = client
        self._heartbeat_task = asyncio.get_running_loop().create_task(self._heartbeat())

    async def receive(self, max_messages: int) -> Sequence[Delivery]:
        now = time.monotonic()
        if now >= self._next_claim:
            # Checked now and then, not on every read: XAUTOCLAIM walks the pending list.
            self._next_claim = now + max(0.5, self.claim_idle / 4)
            claimed = await self._claim(max_messages)
            if claimed:
                self._next_claim = now  # maybe more are waiting
                return claimed
        reply: Any = await self.client.xreadgroup(
            self.group,
            self.consumer,
            {self.destination: ">"},
            count=max_messages,
            block=max(1, int(self.block * 1000)),
        )
        deliveries: list[Delivery] = []
        for _stream, entries in reply or []:
            deliveries.extend(self._delivery(entry_id, fields, 1) for entry_id, fields in entries)
        await self._report_lag()
        return deliveries

    async def idle(self) -> None:
        """Called by the runner while every handler slot is busy (no receive() then): lag is still reported."""
        await self._report_lag()

    async def _report_lag(self) -> None:
        """At most once per ``LAG_INTERVAL``: the group's entries not delivered yet plus those not acknowledged.

        From ``XINFO GROUPS`` (``lag`` needs Redis >= 7; it is nil when Redis cannot tell, e.g. after XDEL,
        and then nothing is reported). Pending entries count too, as uncommitted offsets do for Kafka.
        """
        if not _hooks.on_consumer_lag or self._client is None:
            return
        now = time.monotonic()
        if now < self._next_lag_report:
            return
        self._next_lag_report = now + LAG_INTERVAL
        try:
            groups: Any = await self._client.xinfo_groups(self.destination)
        except Exception as exc:  # the next receive() reports a real outage
            logger.debug("reading the lag of %s failed: %s", self.destination, exc)
            return
        for group in groups:
            name = group.get("name")
            if (name.decode("utf-8", "replace") if isinstance(name, bytes) else name) != self.group:
                continue
            lag = group.get("lag")
            if lag is not None:
                _hooks.consumer_lag(self.system, self.destination, "0", int(lag) + int(group.get("pending") or 0))
            return

    async def _claim(self, count: int) -> list[Delivery]:
        reply: Any = await self.client.xautoclaim(
            self.destination,
            self.group,
            self.consumer,
            min_idle_time=int(self.claim_idle * 1000),
            start_id="0-0",
            count=count,
        )
        # Our own entries come back too when a heartbeat was late: they are being handled here already, and
        # handing them out again would run a message twice at the same time.
        entries = [(entry_id, fields) for entry_id, fields in reply[1] if entry_id not in self._in_flight]
        deliveries = [self._delivery(entry_id, fields, 2) for entry_id, fields in entries if fields is not None]
        if deliveries:
            logger.warning(
                "claimed %d message(s) of %s left pending by another consumer",
                len(deliveries),
                self.destination,
            )
        return deliveries

    async def _heartbeat(self) -> None:
        # XCLAIM to ourselves resets an entry's idle time: "still working on it". A task of its own, because
        # receive() is not called while every handler slot is busy - exactly when handlers are slow.
        interval = max(0.2, self.claim_idle / 3)
        while True:
            await asyncio.sleep(interval)
            if not self._in_flight or self._client is None:
                continue
            try:
                await self._client.xclaim(
                    self.destination, self.group, self.consumer, 0, list(self._in_flight), justid=True
                )
            except Exception as exc:  # the next receive() reports a real outage
                logger.debug("refreshing in-flight entries of %s failed: %s", self.destination, exc)

    def _delivery(self, entry_id: bytes, fields: dict[bytes, bytes], attempt: int) -> Delivery:
        self._in_flight.add(entry_id)
        attributes = {
            key.decode("utf-8", "replace"): value.decode("utf-8", "replace")
            for key, value in fields.items()
            if key != BODY_FIELD
        }
        body = fields.get(BODY_FIELD)
        if body is None:
            # Not written by our forwarder: let the codec reject it with a clear reason.
            body = b""
            attributes["missing_field"] = "body"
        # Entries of one forwarder key are handled one at a time, in stream order, like a Kafka key.
        lane = attributes.get(KEY_FIELD)
        return Delivery(body, attributes, entry_id.decode(), lane=lane, attempt=attempt, token=entry_id)

    async def ack(self, delivery: Delivery) -> None:
        await self._acks.submit(delivery.token)
        self._in_flight.discard(delivery.token)

    async def _xack(self, entry_ids: list[bytes]) -> None:
        await self.client.xack(self.destination, self.group, *entry_ids)

    async def retry_later(self, delivery: Delivery, delay: float) -> None:
        raise NotImplementedError("Redis messages are retried in-process")

    async def dead_letter(self, delivery: Delivery, reason: str, event_name: str | None, attempts: int) -> None:
        fields: dict[Any, Any] = dict(dead_letter_attributes(delivery, reason, event_name, self.destination, attempts))
        fields.pop("missing_field", None)
        fields["body"] = delivery.body
        # One transaction: a dead letter is never written without the original being acknowledged, or the
        # other way round.
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_letter_stream, fields)
            pipe.xack(self.destination, self.group, delivery.token)
            await pipe.execute()
        self._in_flight.discard(delivery.token)

    async def release(self, delivery: Delivery) -> None:
        # Nothing to tell Redis: the entry stays pending and another consumer claims it after ``claim_idle``.
        self._in_flight.discard(delivery.token)

    async def close(self) -> None:
        if self._client is None:
            return
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None
        await self._acks.aclose()
        client, self._client = self._client, None
        try:
            pending = await client.xpending_range(
                self.destination, self.group, min="-", max="+", count=1, consumername=self.consumer
            )
            if not pending:
                # Tidy the group; only when nothing is pending, since deleting a consumer drops its pending
                # entries, which would then never be redelivered.
                await client.xgroup_delconsumer(self.destination, self.group, self.consumer)
        except Exception:
            logger.debug("could not remove consumer %s from group %s", self.consumer, self.group, exc_info=True)
        finally:
            await client.aclose()


__all__ = ["RedisStreamSource", "default_consumer_name"]
