"""Helpers for the Pub/Sub forwarder tests: real topics, a real pulling consumer, a gateable TCP relay."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from google.api_core import exceptions as api_exceptions
from google.cloud import pubsub_v1

from tests._servers import PubSubEmulator, free_port, wait_for


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class Received:
    data: bytes
    attributes: dict[str, str]
    ordering_key: str
    message_id: str

    @property
    def body(self) -> Any:
        return json.loads(self.data)

    @property
    def event_id(self) -> str:
        return self.attributes.get("event_id", "")


class Consumer:
    """A topic plus subscription on the emulator, drained by a real ``SubscriberClient`` in a thread.

    Every pulled message is acknowledged and recorded; pull errors (emulator down) are retried, so the
    consumer outlives an emulator restart once :meth:`create` has run again.
    """

    def __init__(self, emulator: PubSubEmulator, *, ordered: bool = False, topic_id: str | None = None) -> None:
        self.project = emulator.project
        self.topic_id = topic_id or f"topic-{uuid.uuid4().hex[:12]}"
        self.ordered = ordered
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        self.topic_path = self.publisher.topic_path(self.project, self.topic_id)
        self.subscription_path = self.subscriber.subscription_path(self.project, f"sub-{self.topic_id}")
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def create(self) -> None:
        """Create topic and subscription (again, after an emulator restart)."""
        with contextlib.suppress(api_exceptions.AlreadyExists):
            self.publisher.create_topic(name=self.topic_path, timeout=10)
        with contextlib.suppress(api_exceptions.AlreadyExists):
            self.subscriber.create_subscription(
                request={
                    "name": self.subscription_path,
                    "topic": self.topic_path,
                    "enable_message_ordering": self.ordered,
                    "ack_deadline_seconds": 60,
                },
                timeout=10,
            )

    def start(self) -> Consumer:
        self._thread = threading.Thread(target=self._run, name=f"consumer-{self.topic_id}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = self.subscriber.pull(
                    subscription=self.subscription_path, max_messages=1000, timeout=3, retry=None
                )
            except Exception:  # emulator down or subscription not (re)created yet
                time.sleep(0.1)
                continue
            if not response.received_messages:
                continue
            batch = [
                Received(
                    data=r.message.data,
                    attributes=dict(r.message.attributes),
                    ordering_key=r.message.ordering_key,
                    message_id=r.message.message_id,
                )
                for r in response.received_messages
            ]
            with self._lock:
                self.messages.extend(batch)
            with contextlib.suppress(Exception):  # redelivery after a failed ack only adds duplicates
                self.subscriber.acknowledge(
                    subscription=self.subscription_path,
                    ack_ids=[r.ack_id for r in response.received_messages],
                    timeout=5,
                )

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def event_ids(self) -> set[str]:
        return {m.event_id for m in self.received()}

    def wait_for_count(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Wait until ``count`` distinct events arrived (duplicates from retries do not count)."""
        wait_for(lambda: len(self.event_ids()) >= count, timeout=timeout, message=f"{count} events")
        return self.received()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.subscriber.close()
        self.publisher.transport.close()


@pytest.fixture
def pubsub_env(pubsub_emulator: PubSubEmulator, monkeypatch: pytest.MonkeyPatch) -> PubSubEmulator:
    for key, value in pubsub_emulator.env.items():
        monkeypatch.setenv(key, value)
    return pubsub_emulator


@pytest.fixture
def consumer_factory(pubsub_env: PubSubEmulator) -> Iterator[Any]:
    consumers: list[Consumer] = []

    def make(*, ordered: bool = False, emulator: PubSubEmulator | None = None) -> Consumer:
        consumer = Consumer(emulator or pubsub_env, ordered=ordered)
        consumers.append(consumer)
        consumer.create()
        return consumer.start()

    yield make
    for consumer in consumers:
        consumer.close()


class GatedRelay:
    """A TCP relay in front of the emulator whose gate the test can close (cutting every connection).

    The emulator keeps no state across a restart, so the test must recreate topic and subscription before the
    forwarder may reach it again - otherwise messages published in between would be dropped by the emulator
    (a topic without subscription) and look lost. The relay keeps the forwarder cut off until then, and lets
    the test stop deliveries just before the kill so that the consumer can first pull what was acknowledged.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._open = threading.Event()
        self._open.set()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name="pubsub-relay", daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close_gate(self) -> None:
        self._open.clear()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def open_gate(self) -> None:
        self._open.set()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)

    def close(self) -> None:
        self._closed = True
        self.close_gate()
        self._server.close()
        self._thread.join(timeout=5)
