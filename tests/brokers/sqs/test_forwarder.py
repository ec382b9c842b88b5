"""SQSForwardHandler: the 0.x signature and README usage, delivering to a real SQS server."""

from __future__ import annotations

import inspect
import json
import uuid

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.testclient import TestClient

from fastapi_events.delivery import ForwardHandler
from fastapi_events.dispatcher import dispatch
from fastapi_events.errors import ConfigurationError
from fastapi_events.handlers.aws import SQSForwardHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from tests._servers import MotoServer
from tests._sqs import Queue


def test_signature_is_the_one_of_fastapi_events_0x() -> None:
    params = list(inspect.signature(SQSForwardHandler).parameters.values())
    positional = [(p.name, p.default) for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == [
        ("queue_url", inspect.Parameter.empty),
        ("region_name", inspect.Parameter.empty),
        ("serializer", None),
        ("id_generator", None),
        ("max_batch_size", 10),
    ]
    assert params[-1].kind is inspect.Parameter.VAR_KEYWORD
    assert issubclass(SQSForwardHandler, ForwardHandler)
    with pytest.raises(ConfigurationError, match="max_batch_size"):
        SQSForwardHandler("q", "eu-central-1", max_batch_size=11)


def test_readme_usage_with_a_queue_name(moto_server: MotoServer) -> None:
    queue = Queue(dict(moto_server.client_kwargs), name=f"test-queue-{uuid.uuid4().hex[:6]}")
    app = FastAPI()
    app.add_middleware(
        EventHandlerASGIMiddleware,
        handlers=[SQSForwardHandler(queue_url=queue.name, region_name=queue.region, **queue.handler_kwargs)],
    )

    @app.get("/")
    def index(request: Request) -> JSONResponse:
        dispatch("my-fancy-event", payload={"id": 1})
        return JSONResponse({})

    with TestClient(app) as client:
        assert client.get("/").status_code == 200
    received = queue.receive(1)
    assert [r.body for r in received] == ['["my-fancy-event",{"id":1}]']
    assert json.loads(received[0].body) == ["my-fancy-event", {"id": 1}]
    assert received[0].event_name == "my-fancy-event"


def test_serializer_id_generator_and_batch_size_are_honoured(moto_server: MotoServer) -> None:
    queue = Queue(dict(moto_server.client_kwargs))
    ids = iter(f"custom-{i}" for i in range(100))
    handler = SQSForwardHandler(
        queue.url,
        queue.region,
        lambda event: f"{event[0]}|{json.dumps(event[1])}",
        lambda: next(ids),
        3,
        **queue.handler_kwargs,
    )
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[handler])

    @app.post("/")
    def emit() -> dict[str, str]:
        for i in range(7):
            dispatch("tick", payload=i)
        return {}

    with TestClient(app) as client:
        client.post("/")
    received = queue.receive(7)
    queue.drain_rest()
    assert sorted(r.body for r in received) == [f"tick|{i}" for i in range(7)]
    assert sorted(r.event_id for r in received) == sorted(f"custom-{i}" for i in range(7))
    assert handler.transport.max_batch_count == 3
