"""Code written for fastapi-events 0.x keeps working: every API its documentation showed, used the 0.x way.

One test per usage: the 0.x module paths (``fastapi_events.dispatcher``, ``.middleware``, ``.handlers.local``,
``.handlers.base``, ``.handlers.aws``, ``.handlers.gcp``, ``.handlers.echo``, ``.registry.payload_schema``,
``.typing``), keyword names (``payload=``, ``handlers=``, ``middleware_id=``, ``event_name=``), the environment
variable ``FASTAPI_EVENTS_DISABLE_DISPATCH`` and the JSON wire format of the forwarders.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from enum import Enum
from typing import Any

import pydantic
import pytest
from fastapi import Depends, FastAPI
from fastapi.requests import Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.base import BaseEventHandler
from fastapi_events.handlers.local import LocalHandler, local_handler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.registry.payload_schema import registry as payload_schema
from fastapi_events.typing import Event

CAT_ID = "fd375d23-b0c9-4271-a9e0-e028c4cd7230"


@pytest.fixture
def seen(fresh_local_handler) -> list[Event]:
    events: list[Event] = []

    @local_handler.register(event_name="*")
    async def record(event: Event) -> None:
        events.append(event)

    return events


def call_inside_request(code: Any) -> None:
    """Run ``code()`` in an endpoint of a FastAPI app using the middleware with ``local_handler`` (0.x: dispatch
    works anywhere in the request's code)."""
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[local_handler])
    app.get("/")(lambda: code())
    with TestClient(app) as client:
        assert client.get("/").status_code == 200


def test_fastapi_app_with_the_middleware_handles_events_after_the_response(seen) -> None:
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[local_handler])

    @app.get("/")
    def index(request: Request) -> JSONResponse:
        dispatch("order-shipped", payload={"id": 3})
        assert seen == []  # collected during the request, handled after it
        return JSONResponse({"ok": True})

    with TestClient(app) as client:
        assert client.get("/").json() == {"ok": True}
    assert seen == [("order-shipped", {"id": 3})]


def test_starlette_app_with_middleware_list(seen) -> None:
    async def root(request: Request) -> JSONResponse:
        dispatch("page-viewed", payload={"path": "/"})
        return JSONResponse({})

    app = Starlette(
        routes=[Route("/", root)],
        middleware=[Middleware(EventHandlerASGIMiddleware, handlers=[local_handler])],
    )
    with TestClient(app) as client:
        assert client.get("/").status_code == 200
    assert seen == [("page-viewed", {"path": "/"})]


def test_dispatch_with_a_name_and_any_payload_or_none(seen) -> None:
    def code() -> None:
        dispatch("dog-barked", payload={"volume": 11})
        dispatch("dog-slept")
        dispatch("dog-counted", 3)

    call_inside_request(code)
    assert seen == [("dog-barked", {"volume": 11}), ("dog-slept", None), ("dog-counted", 3)]


class BirdSang(pydantic.BaseModel):
    __event_name__ = "bird-sang"

    bird_id: pydantic.UUID4


def test_dispatch_a_pydantic_model_names_the_event_from_dunder_event_name(seen) -> None:
    call_inside_request(lambda: dispatch(BirdSang(bird_id=CAT_ID)))
    assert seen == [("bird-sang", {"bird_id": uuid.UUID(CAT_ID)})]


class AccountEvents(Enum):
    OPENED = "ACCOUNT_OPENED"
    CLOSED = "ACCOUNT_CLOSED"


def test_payload_schema_registry_validates_at_the_call_site(seen, clean_schema_registry) -> None:
    @payload_schema.register(event_name=AccountEvents.OPENED)
    class Opened(pydantic.BaseModel):
        account_id: uuid.UUID
        opened_at: datetime

    now = datetime.now(timezone.utc)
    outcomes: list[str] = []

    def code() -> None:
        for payload in (None, {"account_id": CAT_ID}):
            with pytest.raises(pydantic.ValidationError):
                dispatch(AccountEvents.OPENED, payload)
            outcomes.append("refused")
        dispatch(AccountEvents.OPENED, {"account_id": CAT_ID, "opened_at": now})
        dispatch(AccountEvents.CLOSED, {"anything": "goes"})  # no schema registered: not validated

    call_inside_request(code)
    assert outcomes == ["refused", "refused"]
    assert [(getattr(name, "value", name), payload) for name, payload in seen] == [
        ("ACCOUNT_OPENED", {"account_id": uuid.UUID(CAT_ID), "opened_at": now}),
        ("ACCOUNT_CLOSED", {"anything": "goes"}),
    ]


def test_payload_schema_registered_by_its_dunder_event_name(seen, clean_schema_registry) -> None:
    @payload_schema.register
    class Closed(pydantic.BaseModel):
        __event_name__ = "ACCOUNT_CLOSED"

        account_id: uuid.UUID

    def code() -> None:
        with pytest.raises(pydantic.ValidationError):
            dispatch(AccountEvents.CLOSED, {"account_id": "not a uuid"})
        dispatch(Closed(account_id=CAT_ID))  # a model instance is already valid: dispatched as is

    call_inside_request(code)
    assert seen == [("ACCOUNT_CLOSED", {"account_id": uuid.UUID(CAT_ID)})]


def test_local_handlers_match_fnmatch_patterns_sync_and_async(fresh_local_handler) -> None:
    calls: list[tuple[str, str]] = []

    @local_handler.register(event_name="cat*")
    def every_cat_event(event: Event) -> None:
        event_name, _payload = event  # an event is a (name, payload) tuple
        calls.append(("every_cat_event", event_name))

    @local_handler.register(event_name="cat*")  # several handlers for one pattern
    def every_cat_event_again(event: Event) -> None:
        calls.append(("every_cat_event_again", event[0]))

    @local_handler.register(event_name="*")
    async def every_event(event: Event) -> None:
        calls.append(("every_event", event[0]))

    def code() -> None:
        dispatch("cat_is_cute")
        dispatch("dog_is_cute")

    call_inside_request(code)
    assert sorted(calls) == [
        ("every_cat_event", "cat_is_cute"),
        ("every_cat_event_again", "cat_is_cute"),
        ("every_event", "cat_is_cute"),
        ("every_event", "dog_is_cute"),
    ]


def test_local_handler_with_nested_fastapi_dependencies(fresh_local_handler) -> None:
    received: list[tuple[Event, str]] = []

    async def get_db_conn() -> str:
        return "conn"

    async def get_db_session(db_conn: str = Depends(get_db_conn)) -> str:
        return f"session on {db_conn}"

    @local_handler.register(event_name="*")
    async def store(event: Event, db_session: str = Depends(get_db_session)) -> None:
        received.append((event, db_session))

    call_inside_request(lambda: dispatch("user-saved", {"id": 1}))
    assert received == [(("user-saved", {"id": 1}), "session on conn")]


def test_a_separate_local_handler_instance_only_sees_its_registrations() -> None:
    mine = LocalHandler()
    got: list[Event] = []
    mine.register(lambda event: got.append(event), event_name="x.*")
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[mine])

    @app.get("/")
    def index() -> None:
        dispatch("x.one")
        dispatch("y.two")

    TestClient(app).get("/")
    assert got == [("x.one", None)]


def test_custom_handler_handle_many_gets_the_requests_backlog() -> None:
    batches: list[list[Event]] = []
    singles: list[Event] = []

    class Batching(BaseEventHandler):
        async def handle(self, event: Event) -> None:
            singles.append(event)

        async def handle_many(self, events: Iterable[Event]) -> None:
            batches.append(list(events))

    class OneByOne(BaseEventHandler):
        async def handle(self, event: Event) -> None:
            singles.append(event)

    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[Batching(), OneByOne()])

    @app.get("/")
    def index() -> None:
        dispatch("one")
        dispatch("two", {"n": 2})

    TestClient(app).get("/")
    assert batches == [[("one", None), ("two", {"n": 2})]]  # handle_many wins over handle
    assert singles == [("one", None), ("two", {"n": 2})]  # without handle_many: handle, event by event


def test_sqs_forwarder_sends_the_json_wire_format(monkeypatch) -> None:
    import boto3
    import moto

    from fastapi_events.handlers.aws import SQSForwardHandler

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-central-1",
    }.items():
        monkeypatch.setenv(name, value)
    with moto.mock_aws():
        sqs = boto3.client("sqs", region_name="eu-central-1")
        queue_url = sqs.create_queue(QueueName="test-queue")["QueueUrl"]
        app = FastAPI()
        app.add_middleware(
            EventHandlerASGIMiddleware,
            handlers=[SQSForwardHandler(queue_url="test-queue", region_name="eu-central-1")],
        )
        app.get("/")(lambda: dispatch("event name", {"payload": "here is the payload"}))
        with TestClient(app) as client:
            client.get("/")
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]) for m in messages] == [["event name", {"payload": "here is the payload"}]]


def test_pubsub_and_echo_handlers_at_their_0x_paths(capsys) -> None:
    from fastapi_events.handlers.echo import EchoHandler
    from fastapi_events.handlers.gcp import GoogleCloudSimplePubSubHandler

    assert issubclass(GoogleCloudSimplePubSubHandler, BaseEventHandler)
    GoogleCloudSimplePubSubHandler(project_id="acme", topic_id="orders")  # no network until it sends

    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[EchoHandler()])
    app.get("/")(lambda: dispatch("echoed", {"a": 1}))
    TestClient(app).get("/")
    out = capsys.readouterr().out
    assert "echoed" in out
    assert "'a': 1" in out


def test_middleware_id_dispatches_from_a_background_task_outside_requests(seen) -> None:
    app = FastAPI()
    middleware_id = id(app)
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[local_handler], middleware_id=middleware_id)
    tasks: list[asyncio.Task[None]] = []

    async def ticker() -> None:
        for i in range(100):
            dispatch("tick", payload={"idx": i}, middleware_id=middleware_id)
            await asyncio.sleep(0.05)

    @app.on_event("startup")
    async def start() -> None:
        tasks.append(asyncio.create_task(ticker()))

    with TestClient(app) as client:
        deadline = time.monotonic() + 10
        while sum(1 for name, _ in seen if name == "tick") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        client.portal.call(tasks[0].cancel)
    assert [payload["idx"] for name, payload in seen if name == "tick"][:2] == [0, 1]


def test_dispatch_outside_a_request_raises_lookup_error() -> None:
    with pytest.raises(LookupError):
        dispatch("nowhere")


@pytest.mark.parametrize("value", ["1", "True", "yes"])
def test_disable_dispatch_environment_variable(seen, monkeypatch, value: str) -> None:
    monkeypatch.setenv("FASTAPI_EVENTS_DISABLE_DISPATCH", value)
    call_inside_request(lambda: dispatch("muted"))
    assert seen == []


def test_events_dispatched_inside_handlers_are_handled_too(fresh_local_handler) -> None:
    chain: list[str] = []

    @local_handler.register(event_name="first")
    async def first(event: Event) -> None:
        chain.append("first")
        dispatch("second")

    @local_handler.register(event_name="second")
    def second(event: Event) -> None:
        chain.append("second")

    call_inside_request(lambda: dispatch("first"))
    assert chain == ["first", "second"]
