from __future__ import annotations

import enum
import uuid
from datetime import datetime

import httpx
import pydantic
import pytest
from fastapi.testclient import TestClient

from fastapi_events import drain
from fastapi_events.dispatcher import dispatch
from fastapi_events.errors import (
    MissingEventNameDuringDispatch,
    MultiplePayloadsDetectedDuringDispatch,
    NoEventContextError,
)
from fastapi_events.registry.base import BaseEventPayloadSchemaRegistry
from fastapi_events.registry.payload_schema import registry as payload_schema
from tests.apps import Recorder, app_with


class Color(enum.Enum):
    RED = "color.red"


class CatRequestedAFishEvent(pydantic.BaseModel):
    __event_name__ = "cat-requested-a-fish"

    cat_id: pydantic.UUID4


CAT_ID = "fd375d23-b0c9-4271-a9e0-e028c4cd7230"


def run_route(body, *handlers):
    """Serve one request whose endpoint runs ``body()``; return the recorder's events."""
    recorder = Recorder()
    app = app_with(recorder, *handlers)

    @app.get("/")
    def route() -> dict[str, str]:
        body()
        return {}

    with TestClient(app) as client:
        assert client.get("/").status_code == 200
    return recorder.events


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (
            ("cat-requested-a-fish",),
            {"payload": {"cat_id": CAT_ID}},
            ("cat-requested-a-fish", {"cat_id": CAT_ID}),
        ),
        (("a_cat_is_spotted",), {}, ("a_cat_is_spotted", None)),
        ((), {"event_name": "by-keyword", "payload": [1, 2]}, ("by-keyword", [1, 2])),
        (("int-payload", 7), {}, ("int-payload", 7)),
        ((Color.RED, {"x": 1}), {}, (Color.RED, {"x": 1})),
    ],
)
def test_dispatch_forms_reach_handlers_unchanged(args, kwargs, expected) -> None:
    assert run_route(lambda: dispatch(*args, **kwargs)) == [expected]


def test_pydantic_model_is_dispatched_under_its_event_name_as_a_dict() -> None:
    events = run_route(lambda: dispatch(CatRequestedAFishEvent(cat_id=CAT_ID)))
    assert events == [("cat-requested-a-fish", {"cat_id": uuid.UUID(CAT_ID)})]


def test_pydantic_model_can_be_passed_undumped_and_renamed() -> None:
    model = CatRequestedAFishEvent(cat_id=CAT_ID)
    events = run_route(lambda: dispatch(model, event_name="renamed", payload_schema_dump=False))
    assert events == [("renamed", model)]


def test_model_plus_payload_and_missing_name_are_rejected() -> None:
    class Nameless(pydantic.BaseModel):
        x: int = 1

    with pytest.raises(MultiplePayloadsDetectedDuringDispatch):
        dispatch(CatRequestedAFishEvent(cat_id=CAT_ID), {"other": 1})
    with pytest.raises(MissingEventNameDuringDispatch):
        dispatch(Nameless())
    with pytest.raises(MissingEventNameDuringDispatch):
        dispatch()


def test_payload_is_never_mutated() -> None:
    payload = {"id": 1, "nested": {"a": [1]}}
    snapshot = repr(payload)
    events = run_route(lambda: dispatch("untouched", payload))
    assert events[0][1] is payload
    assert repr(payload) == snapshot


def test_dispatch_outside_request_raises_lookup_error() -> None:
    with pytest.raises(LookupError) as info:
        dispatch("nowhere")
    assert isinstance(info.value, NoEventContextError)
    assert "middleware_id" in str(info.value)


@pytest.mark.parametrize("value", ["1", "True", "yes", "on"])
def test_disable_dispatch_env_var_set_after_import(monkeypatch, value) -> None:
    monkeypatch.setenv("FASTAPI_EVENTS_DISABLE_DISPATCH", value)
    assert run_route(lambda: dispatch("suppressed", {"a": 1})) == []
    dispatch("outside-any-request-is-fine-too")


@pytest.mark.parametrize("value", ["0", "false", ""])
def test_falsy_disable_dispatch_values_keep_dispatch_on(monkeypatch, value) -> None:
    monkeypatch.setenv("FASTAPI_EVENTS_DISABLE_DISPATCH", value)
    assert run_route(lambda: dispatch("kept")) == [("kept", None)]


class UserEvents(enum.Enum):
    SIGNED_UP = "USER_SIGNED_UP"
    ACTIVATED = "USER_ACTIVATED"


def test_payload_validation_raises_at_call_site(clean_schema_registry) -> None:
    @payload_schema.register(event_name=UserEvents.SIGNED_UP)
    class SignUpPayload(pydantic.BaseModel):
        user_id: uuid.UUID
        created_at: datetime

    uid = "9e79cdbb-b216-40f7-9a05-20d223dee89a"
    errors: list[str] = []

    def body() -> None:
        for args in [(UserEvents.SIGNED_UP,), (UserEvents.SIGNED_UP, {"user_id": uid})]:
            try:
                dispatch(*args)
            except pydantic.ValidationError as exc:
                errors.append(str(exc.errors()[0]["type"]))
        now = datetime(2024, 1, 1)
        dispatch(UserEvents.SIGNED_UP, {"user_id": uid, "created_at": now})
        dispatch(UserEvents.ACTIVATED, {"user_id": uid})
        dispatch(SignUpPayload(user_id=uid, created_at=now), event_name=UserEvents.SIGNED_UP)

    events = run_route(body)
    assert errors == ["model_type", "missing"]
    validated = {"user_id": uuid.UUID(uid), "created_at": datetime(2024, 1, 1)}
    assert events == [
        (UserEvents.SIGNED_UP, validated),
        (UserEvents.ACTIVATED, {"user_id": uid}),
        (UserEvents.SIGNED_UP, validated),
    ]


def test_schema_registered_by_dunder_name_and_custom_registry(clean_schema_registry) -> None:
    custom = BaseEventPayloadSchemaRegistry()

    @payload_schema.register
    class Dunder(pydantic.BaseModel):
        __event_name__ = "USER_SIGNED_UP"
        user_id: int

    @custom.register(event_name="only-custom")
    class Custom(pydantic.BaseModel):
        n: int

    assert payload_schema[UserEvents.SIGNED_UP] is Dunder
    with pytest.raises(pydantic.ValidationError):
        dispatch("USER_SIGNED_UP", {"user_id": "not-an-int"})

    def body() -> None:
        dispatch("only-custom", {"n": "5"}, payload_schema_registry=custom)
        dispatch("only-custom", {"n": "x"})  # default registry knows no schema for it
        dispatch("USER_SIGNED_UP", {"user_id": "x"}, validate_payload=False)
        dispatch(
            "USER_SIGNED_UP",
            {"user_id": "3", "extra": 1},
            payload_schema_cls_dict_args={"exclude": {"user_id"}},
        )
        dispatch("USER_SIGNED_UP", {"user_id": "4"}, payload_schema_dump=False)

    events = run_route(body)
    assert events[:4] == [
        ("only-custom", {"n": 5}),
        ("only-custom", {"n": "x"}),
        ("USER_SIGNED_UP", {"user_id": "x"}),
        ("USER_SIGNED_UP", {}),
    ]
    assert events[4] == ("USER_SIGNED_UP", Dunder(user_id=4))


@pytest.mark.anyio
async def test_middleware_id_dispatch_from_a_task_outside_any_request() -> None:
    recorder = Recorder()
    app = app_with(recorder, middleware_id=424242)

    @app.get("/")
    async def index() -> dict[str, str]:
        return {}

    # The middleware stack is built on the first call.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        await client.get("/")
    for i in range(3):
        dispatch("date", payload={"idx": i}, middleware_id=424242)
    assert await drain(5)
    assert recorder.events == [("date", {"idx": 0}), ("date", {"idx": 1}), ("date", {"idx": 2})]
    with pytest.raises(LookupError):
        dispatch("date", middleware_id=999_999_999)
