"""``InMemoryBroker``: a broker inside the test process, driven through the real forwarder and consumer code."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...codec import attributes_for, encode_event, new_event_id
from ...consumer import DEFAULT_RETRY, Consumer, ConsumerStats
from ...delivery import RetryPolicy
from ...errors import ConfigurationError
from ...handlers.local import LocalHandler
from ._forwarder import InMemoryForwardHandler
from ._source import MemorySource
from ._topic import OPERATIONS, DeadLetterRecord, Failure, StoredMessage, Topic, decoded

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ...delivery import DeliveryKwargs

_names = itertools.count(1)
_live: weakref.WeakValueDictionary[str, InMemoryBroker] = weakref.WeakValueDictionary()

# Tests want failures retried in milliseconds, not the seconds a production consumer waits.
_TEST_RETRY_DELAYS = {"initial_delay": 0.01, "max_delay": 0.1}


@dataclass(frozen=True, slots=True)
class TopicSnapshot:
    """What a topic holds and what became of its messages (message ids in the order things happened)."""

    waiting: list[str]  # not received yet, or handed back for a later attempt (in the order they come)
    leased: list[str]  # received by a consumer and not settled
    acknowledged: list[str]
    released: list[str]  # given back unhandled at a consumer's shutdown (delivered again)
    handed_back: list[tuple[str, float]]  # (message id, delay) of failed attempts redelivered by the broker
    dead_letters: list[DeadLetterRecord]


class InMemoryBroker:
    """A broker for tests: topics in memory, written by real forwarders and read by the real consumer.

    Events go through the same codec, delivery layer (batching, retries, spool, dead letters) and consumer
    runner (lanes, retries, ``handler_timeout``, dead letters) as with a real broker; only the wire is missing.
    Safe to use from several threads (a ``TestClient`` runs the app in its own). Consumers elsewhere in the
    process can read it by URL: ``memory://<name>/<topic>`` (see :meth:`url`).
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"broker-{next(_names)}"
        _live[self.name] = self  # a later broker of the same name takes it over (e.g. one per test)
        self._lock = threading.Lock()
        self._topics: dict[str, Topic] = {}
        self._forwarders: dict[str, list[InMemoryForwardHandler]] = {}
        self._ids = itertools.count(1)

    @classmethod
    def named(cls, name: str) -> InMemoryBroker:
        """The live broker called ``name`` (how ``memory://`` URLs find theirs)."""
        broker = _live.get(name)
        if broker is None:
            raise ConfigurationError(f"no InMemoryBroker named {name!r} in this process")
        return broker

    def url(self, topic: str) -> str:
        return f"memory://{self.name}/{topic}"

    def _topic(self, name: str) -> Topic:
        with self._lock:
            topic = self._topics.get(name)
            if topic is None:
                topic = self._topics[name] = Topic(name, self._lock)
            return topic

    # -- producing -----------------------------------------------------------------------------------------
    def forwarder(self, topic: str, **options: Unpack[DeliveryKwargs]) -> InMemoryForwardHandler:
        """A forwarder to ``topic``; takes every delivery option of the real ones (``retry``, ``spool_path``,
        ``key``, ``on_dead_letter``, ``flush_timeout``, ...)."""
        forwarder = InMemoryForwardHandler(self._topic(topic), **options)
        with self._lock:
            self._forwarders.setdefault(topic, []).append(forwarder)
        return forwarder

    def publish(self, topic: str, event_name: str, payload: Any = None, *, key: str | None = None) -> str:
        """Put one event on ``topic`` directly, as another producer would; returns its message id."""
        event = (event_name, payload)
        message_id = new_event_id()
        attributes = attributes_for(event, message_id)
        return self.publish_raw(topic, encode_event(event), attributes, key=key, message_id=message_id)

    def publish_raw(
        self,
        topic: str,
        body: bytes,
        attributes: dict[str, str] | None = None,
        *,
        key: str | None = None,
        message_id: str | None = None,
    ) -> str:
        """Put a message with any body on ``topic`` (e.g. a malformed one); returns its message id."""
        message_id = message_id or f"{topic}-{next(self._ids)}"
        state = self._topic(topic)
        with self._lock:
            state.ready.append(StoredMessage(message_id, bytes(body), dict(attributes or {}), key))
        return message_id

    # -- consuming -----------------------------------------------------------------------------------------
    def source(self, topic: str, *, redelivers: bool = False) -> MemorySource:
        """A consumer :class:`~fastapi_events.consumer.Source` reading ``topic``, for ``Consumer(...)``."""
        return MemorySource(self._topic(topic), redelivers=redelivers)

    async def consume(
        self,
        topic: str,
        handler: LocalHandler,
        *,
        max_attempts: int | None = None,
        retry: RetryPolicy | None = None,
        redelivers: bool = False,
        max_messages: int | None = None,
        timeout: float = 30.0,
        **options: Any,
    ) -> ConsumerStats:
        """Run the consumer on ``topic`` until it is empty: nothing waiting, nothing being handled or retried,
        and every forwarder of the topic done delivering. Returns the consumer's statistics.

        Takes the consumer options (``handler_timeout``, ``concurrency``, ``ignore_unknown``, ``deserializer``,
        ...). Retries wait milliseconds unless ``retry`` says otherwise; ``max_attempts`` defaults to the
        consumer's (5). ``max_messages``: stop once that many were received and settled (the rest stays).
        Raises ``TimeoutError`` when the topic is not empty after ``timeout`` seconds.
        """
        if retry is not None and max_attempts is not None:
            raise ConfigurationError("pass max_attempts or retry, not both")
        if retry is None:
            attempts = max_attempts if max_attempts is not None else DEFAULT_RETRY.max_attempts
            retry = RetryPolicy(max_attempts=attempts, **_TEST_RETRY_DELAYS)
        source = MemorySource(self._topic(topic), redelivers=redelivers, limit=max_messages)
        consumer = Consumer(source, handler, retry=retry, **options)
        run = asyncio.get_running_loop().create_task(consumer.run())
        deadline = time.monotonic() + timeout
        while not run.done() and not source.finished() and not self._drained(topic):
            if time.monotonic() > deadline:
                consumer.stop()
                await run
                state = self._state(topic)
                raise TimeoutError(f"InMemoryBroker.consume({topic!r}): not empty after {timeout:g}s: {state}")
            await asyncio.sleep(0.01)
        consumer.stop()
        return await run

    def _drained(self, topic: str) -> bool:
        # Forwarders first: once they hold nothing, everything they delivered is in the topic already.
        if any(f.stats.queued for f in self._forwarders.get(topic, ())):
            return False
        state = self._topic(topic)
        with self._lock:
            return state.idle()

    def _state(self, topic: str) -> str:
        queued = sum(f.stats.queued for f in self._forwarders.get(topic, ()))
        snap = self.snapshot(topic)
        return f"{queued} event(s) in forwarders, {len(snap.waiting)} waiting, {len(snap.leased)} being handled"

    # -- looking ---------------------------------------------------------------------------------------------
    def snapshot(self, topic: str) -> TopicSnapshot:
        state = self._topic(topic)
        with self._lock:
            return TopicSnapshot(
                waiting=[m.id for m in state.ready] + [entry[2].id for entry in sorted(state.later)],
                leased=list(state.leased),
                acknowledged=list(state.acked),
                released=list(state.released),
                handed_back=list(state.handed_back),
                dead_letters=list(state.dead),
            )

    def messages(self, topic: str) -> list[tuple[str, Any]]:
        """``(event_name, payload)`` of the messages on ``topic`` not consumed yet, in order."""
        state = self._topic(topic)
        with self._lock:
            held = [*state.ready, *(entry[2] for entry in sorted(state.later)), *state.leased.values()]
        return [decoded(m.body, m.attributes.get("event_name", "")) for m in held]

    def dead_letters(self, topic: str) -> list[tuple[str, Any, str]]:
        """``(event_name, payload, reason)`` of every dead letter of ``topic`` (forwarder's and consumers')."""
        return [(d.event_name, d.payload, d.reason) for d in self.snapshot(topic).dead_letters]

    # -- failing -------------------------------------------------------------------------------------------
    def fail_next(self, topic: str, count: int = 1, *, operation: str = "send", permanent: bool = False) -> None:
        """Make the next ``count`` uses of ``operation`` on ``topic`` fail.

        ``"send"``: the broker refuses that many messages - transiently (the forwarder retries them, spending
        their retry budget) or, with ``permanent=True``, for good (dead-lettered at once). ``"open"``,
        ``"receive"``, ``"ack"``, ``"dead_letter"``: the consumer's call raises ``ConnectionError`` (a message
        whose acknowledgement failed is delivered again).
        """
        if operation not in OPERATIONS:
            raise ConfigurationError(f"operation must be one of {', '.join(OPERATIONS)}, not {operation!r}")
        if permanent and operation != "send":
            raise ConfigurationError("permanent=True applies to operation='send' only")
        if count < 1:
            raise ConfigurationError("count must be >= 1")
        state = self._topic(topic)
        with self._lock:
            state.failures.append(Failure(operation, count, permanent))

    def slow_down(self, topic: str, seconds_per_batch: float) -> None:
        """Make every forwarder batch to ``topic`` take ``seconds_per_batch`` before the broker accepts it (a slow
        or distant broker: forwarders then fall behind a busy app and push back on it). 0 restores full speed."""
        if seconds_per_batch < 0:
            raise ConfigurationError("seconds_per_batch must be >= 0")
        state = self._topic(topic)
        with self._lock:
            state.send_delay = float(seconds_per_batch)

    @contextlib.contextmanager
    def unreachable(self, topic: str) -> Iterator[None]:
        """``with broker.unreachable("orders"):`` - an outage: every send and receive of ``topic`` raises
        ``ConnectionError`` (forwarders keep the events and deliver them afterwards, without spending their
        retry budget)."""
        state = self._topic(topic)
        with self._lock:
            state.unreachable = True
        try:
            yield
        finally:
            with self._lock:
                state.unreachable = False

    def __repr__(self) -> str:
        return f"InMemoryBroker({self.name!r})"


__all__ = ["InMemoryBroker", "TopicSnapshot"]
