"""A request's forwarded events are handed over to the broker before the request returns.

The way FastAPI's documentation tells people to test - ``TestClient(app)`` without ``with`` - runs every request
on an event loop of its own and closes it afterwards: whatever a forwarder had not sent by then would be lost.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws
from starlette.testclient import TestClient

from fastapi_events.brokers.sqs import SQSTransport
from fastapi_events.delivery import EntryResult, ForwardHandler, OutboundMessage
from fastapi_events.handlers.aws import SQSForwardHandler
from tests._servers import MotoServer
from tests._sqs import Queue
from tests.delivery._app import make_app

EVENTS_PER_REQUEST = 50


@pytest.fixture
def in_process_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        yield


def _queue_depth(client: Any, url: str) -> int:
    attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_testclient_without_with_under_mock_aws_sees_every_event_when_each_request_returns(
    in_process_aws: None,
) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="orders")["QueueUrl"]
    handler = SQSForwardHandler(queue_url=url, region_name="us-east-1")
    client = TestClient(make_app(handler))  # no ``with``: no lifespan, a new event loop per request

    for request in range(1, 4):
        response = client.post("/events/order.created", json=list(range(EVENTS_PER_REQUEST)))
        assert response.status_code == 200
        # No sleep, no drain: the request's loop is closed already.
        assert _queue_depth(sqs, url) == request * EVENTS_PER_REQUEST
    stats = handler.stats
    assert (stats.delivered, stats.queued, stats.dropped) == (3 * EVENTS_PER_REQUEST, 0, 0)


def test_a_server_restart_between_loops_loses_nothing(moto_server: MotoServer) -> None:
    """Per-request loops against a real server: the sender of each closed loop leaves nothing behind."""
    queue = Queue(dict(moto_server.client_kwargs))
    handler = SQSForwardHandler(queue.name, queue.region, **queue.handler_kwargs)
    client = TestClient(make_app(handler))
    for start in range(0, 5 * EVENTS_PER_REQUEST, EVENTS_PER_REQUEST):
        assert client.post("/events/tick", json=list(range(start, start + EVENTS_PER_REQUEST))).status_code == 200
        assert handler.stats.queued == 0
    queue.receive(5 * EVENTS_PER_REQUEST, timeout=30)
    assert sorted(queue.payloads()) == list(range(5 * EVENTS_PER_REQUEST))


class _RecordingSQSTransport(SQSTransport):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_sizes: list[int] = []

    async def send_batch(self, batch: Sequence[OutboundMessage]) -> Sequence[EntryResult]:
        self.batch_sizes.append(len(batch))
        return await super().send_batch(batch)


@pytest.mark.anyio
async def test_concurrent_requests_share_batches_and_each_returns_after_its_events_are_delivered(
    moto_server: MotoServer,
) -> None:
    queue = Queue(dict(moto_server.client_kwargs))
    transport = _RecordingSQSTransport(queue.name, queue.region, **queue.handler_kwargs)
    handler = ForwardHandler(transport)
    requests = 40
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(handler)), base_url="http://app") as c:

        async def one(n: int) -> int:
            response = await c.post("/events/tick", json=[n])
            assert response.status_code == 200
            return handler.stats.delivered

        delivered_when_returned = await asyncio.gather(*(one(n) for n in range(requests)))
    # Every request saw at least its own event delivered when it returned ...
    assert min(delivered_when_returned) >= 1
    assert handler.stats.delivered == requests
    # ... and they did not each cost a send: requests waiting together went out together.
    assert len(transport.batch_sizes) < requests
    assert max(transport.batch_sizes) > 1
    await handler.shutdown(5)
    await asyncio.to_thread(queue.receive, requests, 30)
    assert sorted(queue.payloads()) == list(range(requests))


class _SilentServer:
    """Accepts TCP connections and never answers: a broker that hangs."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


def test_a_hanging_broker_holds_the_request_no_longer_than_flush_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    silent = _SilentServer()
    try:
        handler = SQSForwardHandler(
            f"http://127.0.0.1:{silent.port}/000000000000/q",
            "us-east-1",
            flush_timeout=0.5,
            endpoint_url=f"http://127.0.0.1:{silent.port}",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client = TestClient(make_app(handler))
        started = time.monotonic()
        assert client.post("/events/tick", json=list(range(EVENTS_PER_REQUEST))).status_code == 200
        took = time.monotonic() - started
        assert 0.5 <= took < 5.0
        # Not delivered, not dropped: held for the background sender of the next loop, and said so.
        assert handler.stats.queued == EVENTS_PER_REQUEST
        assert handler.stats.dropped == 0
        assert "not accepted by" in caplog.text
        assert "flush_timeout=0.5" in caplog.text
    finally:
        silent.close()


def test_during_a_known_outage_requests_are_not_held(dead_endpoint: Any) -> None:
    handler = SQSForwardHandler("http://127.0.0.1:1/000000000000/q", "us-east-1", flush_timeout=20.0, **dead_endpoint())
    client = TestClient(make_app(handler))
    first = time.monotonic()
    assert client.post("/events/tick", json=[1]).status_code == 200
    # The first request learns of the outage with the first failed send (connection refused) ...
    assert time.monotonic() - first < 10.0
    started = time.monotonic()
    for n in range(5):
        assert client.post("/events/tick", json=[n]).status_code == 200
    # ... the next ones do not wait for a broker that is known to be down.
    assert time.monotonic() - started < 2.0
    assert handler.stats.queued == 6


def test_graceful_shutdown_of_a_server_without_lifespan_waits_for_the_requests_events(
    moto_server: MotoServer, tmp_path: Any
) -> None:
    """SIGTERM while a request runs: uvicorn lets it finish, and it finishes only once its events are in the queue.

    With ``--lifespan off`` nothing flushes the forwarder at shutdown: the hand-over is all there is.
    """
    from tests._app_process import AppProcesses

    queue = Queue(dict(moto_server.client_kwargs))
    processes = AppProcesses("tests.delivery._app:app_from_env", tmp_path)
    try:
        env = {
            "FE_QUEUE": queue.name,
            "FE_SPOOL": "",
            "FE_ENDPOINT": moto_server.client_kwargs["endpoint_url"],
            "UVICORN_LIFESPAN": "off",
        }
        app, url = processes.start(env)
        with httpx.Client(base_url=url, timeout=30) as client:
            result: dict[str, Any] = {}

            def post() -> None:
                result["response"] = client.post("/events/order.placed?delay=1.0", json=list(range(50)))

            request = threading.Thread(target=post)
            request.start()
            time.sleep(0.5)  # the request is in its endpoint now
            app.terminate()
            request.join(30)
            assert result["response"].status_code == 200
        assert app.wait(30) in (0, -15)  # uvicorn >= 0.29 re-raises the signal once it shut down gracefully
        queue.receive(50, timeout=10)
        assert sorted(queue.payloads()) == list(range(50))
    finally:
        processes.close()
