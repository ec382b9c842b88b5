"""Google Cloud Pub/Sub :class:`~fastapi_events.delivery.Transport` on top of ``google-cloud-pubsub``.

The delivery layer owns batching, retries, the spool and dead letters; this module hands a layer batch to
``PublisherClient`` and reports a result per entry. The client is thread-based: it is built, flushed and stopped in
this transport's own worker thread, and fed there by ``send_batch``; ``submit`` (the sender's rounds) feeds a
batch's first messages on the event loop (``publish()`` only adds to the client's batch, so they are handed over
when it returns). Its publish futures complete on the client's commit threads, from where a single callback per
batch wakes the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, wait
from typing import Any

from google.api_core.timeout import ConstantTimeout
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.types import BatchSettings, PublisherOptions

from ...concurrency import BlockingExecutor
from ...delivery import DELIVERED, EntryResult, OutboundMessage, Outcome
from ._errors import BrokerUnreachableError, classify, is_unavailable, is_unreachable

logger = logging.getLogger("fastapi_events.pubsub")

#: Largest ``PublishRequest`` the service accepts (what the client library enforces too).
SERVER_MAX_REQUEST_BYTES = 10_000_000
#: Largest number of messages in one ``PublishRequest``.
SERVER_MAX_BATCH_COUNT = 1000
# publish() calls between two GIL hand-overs of the worker thread (see _publish_all).
_YIELD_EVERY = 16
# Messages of a batch submit() publishes on the event loop (each publish() is some tens of µs of Python): a few
# requests' events are handed over when it returns, and a large batch does not hold the loop for long.
_SUBMIT_ON_LOOP = 32


def _field_len(payload: int) -> int:
    """Bytes a length-delimited protobuf field takes: one tag byte, the varint length, the payload."""
    # Unrolled varint length: this runs for every event, twice, on the event loop.
    if payload < 0x80:
        return payload + 2
    if payload < 0x4000:
        return payload + 3
    if payload < 0x200000:
        return payload + 4
    return payload + (5 if payload < 0x10000000 else 6)


def _text_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def encoded_message_size(data: bytes, attributes: Mapping[str, str], ordering_key: str) -> int:
    """Bytes a message adds to a ``PublishRequest`` - the client's own size check, without building protos.

    Empty data is counted as if present, so the figure is never below the real one.
    """
    size = _field_len(len(data))
    for key, value in attributes.items():
        size += _field_len(_field_len(_text_len(key)) + _field_len(_text_len(value)))
    if ordering_key:
        size += _field_len(_text_len(ordering_key))
    return _field_len(size)


class PubSubTransport:
    """Publishes delivery-layer batches to one Pub/Sub topic.

    ``batch_settings`` feeds both sides: ``max_messages`` and ``max_bytes`` become the layer's batch limits,
    and the client's count and byte limits are set so that it never splits a layer batch for either; its
    ``max_latency`` timer (10 ms by default) sends what has been added so far, so a long batch - publish() costs
    ~100 µs of Python per message - leaves in a few pipelined requests while the rest is still being added.
    Client-side retries are off by default: the layer retries failed entries with backoff, while client retries
    would hold a batch for minutes during an outage (forever with ordering keys) and hide the outage from it.
    """

    system = "gcp_pubsub"
    # publish() is Python (tens of µs): submitting each request's few events on its own call costs a third more CPU
    # under load than the sender's rounds, which take several requests' events at once.
    submit_per_call = False

    def __init__(
        self,
        project_id: str,
        topic_id: str,
        *,
        batch_settings: BatchSettings | None = None,
        ordering: bool = False,
        publisher_options: PublisherOptions | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
        publish_timeout: float = 30.0,
    ) -> None:
        self.project_id = project_id
        self.topic_id = topic_id
        # Pure string formatting (no I/O), so it is safe to do here.
        self.destination = f"projects/{project_id}/topics/{topic_id}"
        self._request_overhead = _field_len(len(self.destination.encode()))

        settings = batch_settings or BatchSettings(max_messages=SERVER_MAX_BATCH_COUNT)
        self.max_batch_count: int = max(1, min(settings.max_messages, SERVER_MAX_BATCH_COUNT))
        request_bytes = min(settings.max_bytes, SERVER_MAX_REQUEST_BYTES)
        self.max_batch_bytes: int = request_bytes - self._request_overhead
        self.max_message_bytes: int = SERVER_MAX_REQUEST_BYTES - self._request_overhead
        # The client commits when the count *reaches* max_messages, leaving that message for the next request;
        # one more slot keeps a full layer batch in one request.
        self._batch_settings = BatchSettings(
            max_bytes=request_bytes,
            max_latency=settings.max_latency,
            max_messages=self.max_batch_count + 1,
        )

        options = publisher_options or PublisherOptions(
            retry=None,
            timeout=ConstantTimeout(publish_timeout),  # type: ignore[no-untyped-call]
        )
        self.ordering = ordering or options.enable_message_ordering
        self._publisher_options = options._replace(enable_message_ordering=self.ordering)
        self._client_kwargs = dict(client_kwargs or {})
        self._publish_timeout = publish_timeout

        self._client: pubsub_v1.PublisherClient | None = None
        self._reconnect = False  # the service was unreachable: build a new client for the next send
        self._threads = BlockingExecutor("pubsub-transport")
        # Publish futures not completed yet, so that close() can wait for them after stopping the client.
        self._inflight: set[Future[str]] = set()
        self._inflight_lock = threading.Lock()
        self._queued_tails = 0  # batches submit() left to the worker thread, not all published yet

    def message_size(self, message: OutboundMessage) -> int:
        return encoded_message_size(message.body, message.attributes, self._ordering_key(message))

    def _ordering_key(self, message: OutboundMessage) -> str:
        return (message.key or "") if self.ordering else ""

    async def open(self) -> None:
        # The layer never calls open/close concurrently with anything else, so no lock (which would also tie
        # this transport to one event loop).
        if self._client is not None:
            return
        try:
            # Credential discovery may call the metadata server; channel setup touches the network stack.
            self._client = await self._threads.run(self._make_client)
        except BaseException:
            self._threads.shutdown()
            raise

    def _make_client(self) -> pubsub_v1.PublisherClient:
        # Looked up on the module when the forwarder opens, so that ``patch("google.cloud.pubsub_v1.PublisherClient")``
        # in a test applies.
        return pubsub_v1.PublisherClient(
            batch_settings=self._batch_settings,
            publisher_options=self._publisher_options,
            **self._client_kwargs,
        )

    def submit(self, batch: Sequence[OutboundMessage]) -> tuple[int, asyncio.Future[Sequence[EntryResult]]]:
        """Hand the first messages of ``batch`` (up to ``_SUBMIT_ON_LOOP``) to the client on the event loop:
        ``publish()`` only adds them to its batch, which its own threads send. The rest go from the worker thread,
        as ``send_batch`` sends them. Returns how many the client holds now and the future of every result."""
        client = self._client
        if client is None or self._reconnect or not batch or self._queued_tails:
            # Not open, reconnecting, or an earlier batch's rest still waits for the worker thread: this one goes
            # after it, so that the client sees every message (of an ordering key) in the order given.
            return 0, self._send_after(batch)
        loop = asyncio.get_running_loop()
        head = batch[:_SUBMIT_ON_LOOP]
        done: asyncio.Future[None] = loop.create_future()
        pending = self._publish_all(client, head, loop, done, on_loop=True)
        tail = self._send_after(batch[len(head) :]) if len(batch) > len(head) else None
        return len(head), asyncio.ensure_future(self._submitted(client, head, pending, done, tail))

    def _send_after(self, batch: Sequence[OutboundMessage]) -> asyncio.Future[Sequence[EntryResult]]:
        """``send_batch(batch)`` behind what the worker thread already has; counted until published."""
        self._queued_tails += 1
        return asyncio.ensure_future(self._send(batch, queued=True))

    async def _submitted(
        self,
        client: pubsub_v1.PublisherClient,
        head: Sequence[OutboundMessage],
        pending: list[object],
        done: asyncio.Future[None],
        tail: asyncio.Future[Sequence[EntryResult]] | None,
    ) -> Sequence[EntryResult]:
        try:
            results = await self._results(client, head, pending, done, in_thread=False)
        except BaseException:
            if tail is not None:
                # The whole batch is retried: the tail's own outcome no longer matters (not even its error).
                tail.add_done_callback(_consume_outcome)
            raise
        if tail is None:
            return results
        return [*results, *(await tail)]

    async def send_batch(self, batch: Sequence[OutboundMessage]) -> Sequence[EntryResult]:
        return await self._send(batch, queued=False)

    async def _send(self, batch: Sequence[OutboundMessage], *, queued: bool) -> Sequence[EntryResult]:
        try:
            if not batch:
                return []
            if self._client is not None and self._reconnect:
                # After an outage gRPC backs off reconnecting for up to two minutes; a fresh client connects now.
                old, self._client, self._reconnect = self._client, None, False
                await self._threads.run(self._stop_client, old)
            if self._client is None:
                await self.open()
            client = self._client
            assert client is not None
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()
            pending = await self._threads.run(self._publish_all, client, batch, loop, done)
        finally:
            if queued:
                self._queued_tails -= 1
        return await self._results(client, batch, pending, done, in_thread=True)

    async def _results(
        self,
        client: pubsub_v1.PublisherClient,
        batch: Sequence[OutboundMessage],
        pending: list[object],
        done: asyncio.Future[None],
        *,
        in_thread: bool,
    ) -> Sequence[EntryResult]:
        """Once every publish future of ``batch`` completed: a result per message, or BrokerUnreachableError."""
        # The RPC timeout completes every future; the margin only guards against a client bug leaving one
        # pending, which is then reported RETRY (at-least-once: a late success may be sent twice).
        try:
            await asyncio.wait_for(asyncio.shield(done), self._publish_timeout * 2 + 5)
        except asyncio.TimeoutError:
            logger.warning("Pub/Sub publish futures for %s did not complete in time", self.destination)
        if in_thread:
            # Reading a thousand futures is done off the loop as well: the loop only receives the verdict.
            results, unreachable = await self._threads.run(self._summarise, client, batch, pending)
        else:  # a few, published on the loop
            results, unreachable = self._summarise(client, batch, pending)
        if unreachable:
            # The layer waits out an outage without spending the entries' retry budget when we raise.
            self._reconnect = any(is_unavailable(item) for item in pending)
            raise BrokerUnreachableError(f"Pub/Sub unreachable for {self.destination}: {results[0].reason}")
        return results

    def _publish_all(
        self,
        client: pubsub_v1.PublisherClient,
        batch: Sequence[OutboundMessage],
        loop: asyncio.AbstractEventLoop,
        done: asyncio.Future[None],
        on_loop: bool = False,
    ) -> list[object]:
        # publish() returns a Future, or raises for this entry; anything else comes from a stand-in client.
        out: list[object] = []
        for index, message in enumerate(batch):
            if not on_loop and index % _YIELD_EVERY == 0:
                # publish() is ~100 µs of pure Python per message; without a pause now and then this thread
                # keeps the GIL from the event loop for the switch interval at every one of its I/O calls.
                time.sleep(0)
            try:
                out.append(
                    client.publish(
                        self.destination,
                        message.body,
                        ordering_key=self._ordering_key(message),
                        **message.attributes,
                    )
                )
            except Exception as exc:  # too large, bad attribute, stopped client: this entry only
                out.append(exc)
        futures = [item for item in out if isinstance(item, Future)]
        with self._inflight_lock:
            self._inflight.update(futures)
        remaining = len(futures)
        lock = threading.Lock()

        # One wake-up of the event loop per batch, not one per message.
        def on_done(future: Future[str]) -> None:
            nonlocal remaining
            with lock:
                remaining -= 1
                last = remaining == 0
            with self._inflight_lock:
                self._inflight.discard(future)
            if last:
                loop.call_soon_threadsafe(_set_done, done)

        if not futures:
            loop.call_soon_threadsafe(_set_done, done)
        for future in futures:
            future.add_done_callback(on_done)
        return out

    def _summarise(
        self, client: pubsub_v1.PublisherClient, batch: Sequence[OutboundMessage], pending: list[object]
    ) -> tuple[list[EntryResult], bool]:
        """Per-entry results, and whether the batch failed only because the service was unreachable."""
        results: list[EntryResult] = []
        failed_keys: set[str] = set()
        unreachable = delivered = False
        for message, item in zip(batch, pending, strict=True):
            result = self._result_of(item)
            if result.outcome is Outcome.DELIVERED:
                delivered = True
            elif self._ordering_key(message):
                failed_keys.add(self._ordering_key(message))
            unreachable = unreachable or is_unreachable(item)
            results.append(result)
        # A failed ordered publish pauses its key in the client; the layer resends the entries in order.
        for key in failed_keys:
            # RuntimeError/ValueError: not paused (any more), or the client is stopped.
            with contextlib.suppress(RuntimeError, ValueError):
                client.resume_publish(self.destination, key)
        return results, unreachable and not delivered

    def _result_of(self, item: object) -> EntryResult:
        if isinstance(item, BaseException):
            return classify(item)
        if not isinstance(item, Future):
            # A stand-in client (``unittest.mock.patch`` of PublisherClient) accepted the message: that is all
            # it can tell.
            return DELIVERED
        if not item.done():
            return EntryResult(Outcome.RETRY, "publish did not complete in time")
        exc = item.exception()
        if exc is None:
            return DELIVERED
        return classify(exc)

    def _stop_client(self, client: pubsub_v1.PublisherClient) -> None:
        """Send whatever the client still holds, wait for those requests, then release the channel."""
        with contextlib.suppress(RuntimeError):  # already stopped
            client.stop()
        with self._inflight_lock:
            inflight = list(self._inflight)
        if inflight:
            wait(inflight, timeout=self._publish_timeout + 5)
        client.transport.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await self._threads.run(self._stop_client, client)
        finally:
            self._threads.shutdown()


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: no "exception was never retrieved" warning


def _set_done(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


__all__ = ["SERVER_MAX_BATCH_COUNT", "SERVER_MAX_REQUEST_BYTES", "PubSubTransport", "encoded_message_size"]
