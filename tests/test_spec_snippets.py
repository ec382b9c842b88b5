"""Every Python snippet of the fastapi-events 0.x README (our API specification) runs unchanged against this package.

The snippets are read from the specification file shipped beside the repository (``../shared/seeds``), not copied
here. Starlite snippets are excluded: that framework is dead and support for it was dropped.
"""

from __future__ import annotations

import asyncio
import os
import re
import textwrap
import time
from pathlib import Path
from typing import Any

import pydantic
import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Route

from fastapi_events import drain
from fastapi_events.handlers.local import local_handler
from fastapi_events.typing import Event

SPEC = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "004_113875dac7a71539.txt"


def _snippets() -> list[str]:
    if not SPEC.exists():
        pytest.fail(f"the API specification {SPEC} is missing (CI runs with shared/ beside the clone)")
    text = SPEC.read_text()
    blocks = re.findall(r"^( *)```python\n(.*?)^\1```", text, flags=re.S | re.M)
    return [textwrap.dedent(body) for _, body in blocks]


def snippet(*needles: str) -> str:
    found = [s for s in _snippets() if all(n in s for n in needles)]
    assert len(found) == 1, f"expected one snippet containing {needles}, found {len(found)}"
    return found[0]


def run(code: str, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    namespace = {"__name__": "snippet"} if namespace is None else namespace
    exec(compile(code, "<spec snippet>", "exec", dont_inherit=True), namespace)
    return namespace


@pytest.fixture
def json_response_without_content(monkeypatch) -> None:
    """The configuration snippets return ``JSONResponse()``; Starlette requires ``content``: default it to None."""
    from starlette.responses import JSONResponse

    original = JSONResponse.__init__

    def init(self: JSONResponse, content: Any = None, *args: Any, **kwargs: Any) -> None:
        original(self, content, *args, **kwargs)

    monkeypatch.setattr(JSONResponse, "__init__", init)


@pytest.fixture
def seen(fresh_local_handler) -> list[Event]:
    events: list[Event] = []

    @local_handler.register(event_name="*")
    async def record(event: Event) -> None:
        events.append(event)

    return events


def test_every_snippet_is_covered() -> None:
    covered = [
        ("FastAPI()", "add_middleware", "my-fancy-event"),
        ("Starlette(middleware",),
        ("a_cat_is_spotted",),
        ("class CatRequestedAFishEvent",),
        ("@payload_schema.register(event_name=UserEvents.SIGNED_UP)",),
        ("# Events with payload schema registered",),
        ("def handle_all_cat_events",),
        ("get_db_session",),
        ("SQSForwardHandler(queue_url",),
        ('["event name"',),
        ("class MyOwnEventHandler",),
        ("middleware_id=event_handler_id",),
    ]
    assert sum(1 for s in _snippets() if "starlite" not in s) == len(covered)
    for needles in covered:
        snippet(*needles)


def test_fastapi_configuration_snippet(seen, json_response_without_content) -> None:
    ns = run(snippet("FastAPI()", "add_middleware", "my-fancy-event"))
    with TestClient(ns["app"]) as client:
        assert client.get("/").status_code == 200
    assert seen == [("my-fancy-event", {"id": 1})]


def test_starlette_configuration_snippet(seen, monkeypatch, json_response_without_content) -> None:
    # Starlette 1.0 removed the ``@app.route`` decorator the snippet uses; give it back (Starlette's API, not ours).
    if not hasattr(Starlette, "route"):

        def route(self: Starlette, path: str) -> Any:
            def decorator(func: Any) -> Any:
                self.router.routes.append(Route(path, func))
                return func

            return decorator

        monkeypatch.setattr(Starlette, "route", route, raising=False)
    ns = run(snippet("Starlette(middleware"))
    with TestClient(ns["app"]) as client:
        assert client.get("/").status_code == 200
    assert seen == [("new event", {"id": 1})]


def _inside_request(code: str, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run a snippet 'anywhere in code' - here: inside an endpoint of an app using the middleware."""
    from fastapi import FastAPI

    from fastapi_events.middleware import EventHandlerASGIMiddleware

    namespace = {"__name__": "snippet"} if namespace is None else namespace
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[local_handler])

    @app.get("/")
    def endpoint() -> None:
        run(code, namespace)

    with TestClient(app) as client:
        assert client.get("/").status_code == 200
    return namespace


def test_dispatch_snippets(seen) -> None:
    _inside_request(snippet("a_cat_is_spotted"))
    _inside_request(snippet("class CatRequestedAFishEvent"))
    cat = {"cat_id": "fd375d23-b0c9-4271-a9e0-e028c4cd7230"}
    import uuid

    assert seen == [
        ("cat-requested-a-fish", cat),
        ("a_cat_is_spotted", None),
        ("cat-requested-a-fish", {"cat_id": uuid.UUID(cat["cat_id"])}),
        ("cat-requested-a-fish", cat),
    ]


def test_payload_validation_snippets(seen, clean_schema_registry) -> None:
    from fastapi_events.dispatcher import dispatch

    # The validation snippet continues the registration snippet and uses dispatch() imported in earlier ones.
    namespace = run(snippet("@payload_schema.register(event_name=UserEvents.SIGNED_UP)"))
    namespace["dispatch"] = dispatch
    statements = re.split(r"\n(?=dispatch\()", snippet("# Events with payload schema registered"))
    raised: list[bool] = []

    def body() -> None:
        for statement in statements:
            expects_error = "raises ValidationError" in statement
            try:
                run(statement, namespace)
            except pydantic.ValidationError:
                raised.append(True)
                assert expects_error, statement
            else:
                assert not expects_error, statement

    from fastapi import FastAPI

    from fastapi_events.middleware import EventHandlerASGIMiddleware

    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[local_handler])
    app.get("/")(body)
    with TestClient(app) as client:
        assert client.get("/").status_code == 200
    assert raised == [True, True]
    assert [str(getattr(name, "value", name)) for name, _ in seen] == [
        "USER_SIGNED_UP",
        "USER_ACTIVATED",
        "USER_SIGNED_UP",
    ]


def test_local_handler_snippets(fresh_local_handler, caplog) -> None:
    run(snippet("def handle_all_cat_events"))
    run(snippet("get_db_session"))
    matched = [r.func.__name__ for r in local_handler._get_handlers_for_event("cat_is_cute")]
    assert matched == [
        "handle_all_cat_events",
        "handle_all_cat_events_another_way",
        "handle_all_events",
        "handle_all_events",
    ]
    assert [r.func.__name__ for r in local_handler._get_handlers_for_event("dog")] == [
        "handle_all_events"
    ] * 2
    with caplog.at_level("ERROR", logger="fastapi_events"):
        _inside_request("from fastapi_events.dispatcher import dispatch\ndispatch('cat_is_cute', {'x': 1})")
    # All four ran (two sync, two async, one with nested Depends) and none failed.
    assert [r for r in caplog.records if r.name == "fastapi_events"] == []


def test_custom_handler_snippet() -> None:
    ns = run(snippet("class MyOwnEventHandler"))
    calls: list[list[Event]] = []

    class Observed(ns["MyOwnEventHandler"]):  # type: ignore[misc, valid-type]
        async def handle_many(self, events):
            calls.append(list(events))
            await super().handle_many(events)

    from fastapi import FastAPI

    from fastapi_events.dispatcher import dispatch
    from fastapi_events.middleware import EventHandlerASGIMiddleware

    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[Observed()])

    @app.get("/")
    def index() -> None:
        dispatch("one")
        dispatch("two")

    TestClient(app).get("/")
    assert calls == [[("one", None), ("two", None)]]


def test_wire_format_snippet_is_json() -> None:
    import json

    code = snippet('["event name"').strip()
    assert json.loads(code) == ["event name", {"payload": "here is the payload"}]


def test_sqs_forwarder_snippet_builds_an_app_without_touching_aws(monkeypatch) -> None:
    from fastapi import FastAPI

    from fastapi_events.handlers.aws import SQSForwardHandler
    from fastapi_events.middleware import EventHandlerASGIMiddleware

    ns = run(
        snippet("SQSForwardHandler(queue_url"),
        {
            "__name__": "snippet",
            "FastAPI": FastAPI,
            "EventHandlerASGIMiddleware": EventHandlerASGIMiddleware,
            "SQSForwardHandler": SQSForwardHandler,
        },
    )
    assert isinstance(ns["app"], FastAPI)


def test_middleware_id_snippet_dispatches_from_a_startup_task(seen) -> None:
    ns = run(snippet("middleware_id=event_handler_id"))
    with TestClient(ns["app"]) as client:
        assert client.get("/").status_code == 200
        deadline = time.monotonic() + 5
        while sum(1 for name, _ in seen if name == "date") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        client.portal.call(drain, 5)
        for task in client.portal.call(asyncio.all_tasks):
            if task.get_coro().__qualname__ == "dispatch_task":  # type: ignore[union-attr]
                client.portal.call(task.cancel)
    assert ("hello", {"id": 1}) in seen
    assert [payload["idx"] for name, payload in seen if name == "date"][:2] == [0, 1]


def test_faq_disable_dispatch_env_var(seen, monkeypatch) -> None:
    monkeypatch.setenv("FASTAPI_EVENTS_DISABLE_DISPATCH", "True")
    _inside_request("from fastapi_events.dispatcher import dispatch\ndispatch('muted')")
    assert seen == []
    assert os.environ["FASTAPI_EVENTS_DISABLE_DISPATCH"] == "True"
