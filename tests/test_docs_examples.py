"""Every code example of the documentation is a file under docs_src/, and every one of them runs here.

The pages include the files (``--8<-- "docs_src/..."``), so what a reader copies is what these tests run. Apps are
exercised through ``TestClient`` and their effects checked; the README's examples must be parts of these files.
Examples that need a real server are exercised where those servers are (the live-stream page in a browser:
tests/stream/test_browser.py).
"""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fastapi_events import RetryPolicy, drain
from fastapi_events.handlers.local import local_handler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.testing import InMemoryBroker, capture_events
from fastapi_events.typing import Event

ROOT = Path(__file__).resolve().parents[1]
DOCS_SRC = ROOT / "docs_src"
EXAMPLES = sorted(str(path.relative_to(ROOT)) for path in DOCS_SRC.rglob("*.py") if path.name != "__init__.py")
# Examples that are themselves test modules: run by pytest (test_example_test_modules_pass).
TEST_MODULES = [name for name in EXAMPLES if Path(name).name.startswith("test_")]
# Exercised outside this module, next to the servers they need.
ELSEWHERE = {
    "docs_src/streams/app.py": "tests/stream/test_browser.py::test_documented_example_in_the_browser",
    "docs_src/delayed/app.py": "tests/outbox/test_docs_delayed.py::test_documented_reservations_expire",
    "docs_src/webhooks/sender.py": "tests/webhooks/test_docs_example.py",
    "docs_src/webhooks/receiver.py": "tests/webhooks/test_docs_example.py",
    "docs_src/webhooks/subscriptions.py": "tests/webhooks/test_docs_example.py",
    "docs_src/backpressure/app.py": (
        "tests/delivery/test_backpressure_example.py::test_the_backpressure_example_app_forwards_to_redis"
    ),
}

EXERCISED: dict[str, Callable[..., None]] = {}


@pytest.fixture(autouse=True)
def no_payload_schemas(clean_schema_registry) -> None:
    """The examples reuse common event names ("order.placed"): payload schemas other tests registered for such names
    must not validate (and reshape) their payloads here."""
    from fastapi_events.registry.payload_schema import registry

    registry.data.clear()


def exercises(example: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def register(test: Callable[..., None]) -> Callable[..., None]:
        EXERCISED[example] = test
        return test

    return register


def run(example: str) -> dict[str, Any]:
    return runpy.run_path(str(ROOT / example), run_name=f"docs_example_{Path(example).stem}")


def app_with(*handlers: Any, **options: Any) -> Any:
    from fastapi import FastAPI

    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=list(handlers), **options)
    return app


def test_every_example_is_run_and_shown() -> None:
    pages = "\n".join(p.read_text() for p in (ROOT / "docs").rglob("*.md"))
    included = set(re.findall(r'--8<-- "(docs_src/[^"]+)"', pages))
    assert included <= set(EXAMPLES), f"pages include missing files: {sorted(included - set(EXAMPLES))}"
    assert set(EXAMPLES) <= included, f"examples no page shows: {sorted(set(EXAMPLES) - included)}"
    unexercised = set(EXAMPLES) - set(EXERCISED) - set(TEST_MODULES) - set(ELSEWHERE)
    assert not unexercised, f"examples no test runs: {sorted(unexercised)}"


def test_readme_is_a_landing_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines: move details into docs/"


def test_readme_examples_are_parts_of_tested_files() -> None:
    readme = (ROOT / "README.md").read_text()
    sources = [(ROOT / name).read_text() for name in EXAMPLES]
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "the README shows no example"
    for block in blocks:
        assert any(block in source for source in sources), f"README example not in docs_src/:\n{block}"


@exercises("docs_src/getting_started/app.py")
def test_getting_started(fresh_local_handler) -> None:
    ns = run("docs_src/getting_started/app.py")
    with TestClient(ns["app"]) as client:
        assert client.post("/users").json() == {"id": 1}
    assert ns["welcomed"] == [1]


@exercises("docs_src/getting_started/starlette_app.py")
def test_getting_started_starlette() -> None:
    ns = run("docs_src/getting_started/starlette_app.py")
    with TestClient(ns["app"]) as client:
        assert client.get("/").json() == {"hello": "world"}
    assert ns["viewed"] == ["/"]


@exercises("docs_src/dispatching/events.py")
def test_dispatch_forms() -> None:
    ns = run("docs_src/dispatching/events.py")
    with capture_events() as events:
        ns["place_order"]()
    assert events.names == ["order.placed", "order.placed", "invoice.issued"]
    assert events.payloads("order.placed") == [{"order_id": 7}, {"order_id": 7}]
    assert events.payloads("invoice.issued") == [{"invoice_id": 3}]


@exercises("docs_src/dispatching/validation.py")
def test_payload_validation(clean_schema_registry) -> None:
    ns = run("docs_src/dispatching/validation.py")
    with capture_events() as events:
        ns["place_order"](7)
        with pytest.raises(pydantic.ValidationError):
            ns["place_order"]("seven")
    assert events.payloads("order.placed") == [{"order_id": 7}]


@exercises("docs_src/dispatching/middleware_id.py")
def test_dispatch_outside_requests(fresh_local_handler) -> None:
    seen: list[Event] = []
    local_handler.register(lambda event: seen.append(event), event_name="*")
    ns = run("docs_src/dispatching/middleware_id.py")
    with TestClient(ns["app"]) as client:
        client.portal.call(drain, 10)
    assert ("app.started", None) in seen
    assert ("nightly.report", {"rows": 10}) in seen


@exercises("docs_src/handlers/local.py")
def test_local_handlers_with_dependencies(fresh_local_handler) -> None:
    ns = run("docs_src/handlers/local.py")
    sessions: list[Any] = []

    class Recorded(ns["Session"]):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            sessions.append(self)

    ns["get_session"].__globals__["Session"] = Recorded
    app = app_with(local_handler)
    from fastapi_events.dispatcher import dispatch

    @app.post("/orders")
    def place() -> None:
        dispatch("order.placed", {"order_id": 7})
        dispatch("order.cancelled", {"order_id": 8})

    with TestClient(app) as client:
        client.post("/orders")
    assert ns["receipts"] == [7]
    assert sorted(row for session in sessions for row in session.rows) == [
        ("order.cancelled", {"order_id": 8}),
        ("order.placed", {"order_id": 7}),
    ]
    assert all(session.closed for session in sessions)  # the yield dependency was torn down


@exercises("docs_src/handlers/custom.py")
def test_custom_handler_reports_a_bad_event_and_keeps_the_others() -> None:
    ns = run("docs_src/handlers/custom.py")
    trail = ns["AuditTrail"]()
    failures: list[tuple[Any, str]] = []
    app = app_with(trail, on_error=lambda event, handler, exc: failures.append((event[0], str(exc))))
    from fastapi_events.dispatcher import dispatch

    @app.post("/")
    def index() -> None:
        dispatch("a", {"x": 1})
        dispatch("b", 3)
        dispatch("c", {"y": 2})

    TestClient(app).post("/")
    assert trail.batches == [[("a", {"x": 1}), ("c", {"y": 2})]]
    assert failures == [("b", "payload must be a dict")]


@exercises("docs_src/handlers/on_error.py")
def test_on_error_hook(fresh_local_handler) -> None:
    ns = run("docs_src/handlers/on_error.py")

    @local_handler.register(event_name="payment.*")
    async def charge(event: Event) -> None:
        raise RuntimeError("card declined")

    from fastapi_events.dispatcher import dispatch

    ns["app"].post("/pay")(lambda: dispatch("payment.requested", {"amount": 5}))
    with TestClient(ns["app"]) as client:
        assert client.post("/pay").status_code == 200  # a failing handler never reaches the client
    [(name, handler_name, error)] = ns["failures"]
    assert (name, error) == ("payment.requested", "card declined")
    assert "charge" in handler_name


@exercises("docs_src/handlers/event_meta.py")
def test_event_meta_dependency(fresh_local_handler) -> None:
    ns = run("docs_src/handlers/event_meta.py")
    app = app_with(local_handler)
    from fastapi_events.dispatcher import dispatch

    app.post("/")(lambda: dispatch("order.placed", {"order_id": 1}))
    TestClient(app).post("/")
    [meta] = ns["seen"]
    assert (meta.name, meta.attempt) == ("order.placed", 1)
    assert meta.id


@exercises("docs_src/forwarders/fanout.py")
def test_forwarders_are_built_without_touching_a_broker(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SPOOL_DIR", str(tmp_path))
    ns = run("docs_src/forwarders/fanout.py")  # every forwarder validates its settings here; none connects yet
    [middleware] = ns["app"].user_middleware
    assert middleware.kwargs["handlers"][1].spool_path == str(tmp_path / "sqs.spool")
    assert not list(tmp_path.iterdir())  # nothing opened before the app starts
    assert ns["order_key"](("order.placed", {"order_id": 5})) == "5"


@exercises("docs_src/forwarders/webhook_transport.py")
@pytest.mark.anyio
async def test_custom_transport_delivers_retries_and_dead_letters() -> None:
    ns = run("docs_src/forwarders/webhook_transport.py")
    received: list[Any] = []
    refused_once: set[str] = set()

    async def hook(request: Request) -> Response:
        events = json.loads(await request.body())
        names = [name for name, _ in events]
        if "bad" in names:
            return Response(status_code=422)
        if "flaky" in names and "flaky" not in refused_once:
            refused_once.add("flaky")
            return Response(status_code=503)
        received.extend(events)
        return Response(status_code=204)

    receiver = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    dead: list[tuple[str, str]] = []
    forwarder = ns["ForwardHandler"](
        ns["WebhookTransport"]("http://receiver/hook", transport=httpx.ASGITransport(app=receiver)),
        on_dead_letter=lambda message, reason: dead.append((message.event_name, reason)),
        retry=RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05),
    )
    await forwarder.startup()
    try:
        for event in [("ok", {"n": 1}), ("flaky", {"n": 2})]:
            await forwarder.handle(event)
        await forwarder.flush(10)
        await forwarder.handle(("bad", {"n": 3}))
        await forwarder.flush(10)
    finally:
        await forwarder.shutdown(10)
    assert sorted(received, key=str) == sorted([["ok", {"n": 1}], ["flaky", {"n": 2}]], key=str)
    assert dead == [("bad", "rejected by broker: HTTP 422")]
    assert isinstance(ns["webhook_forwarder"]("http://receiver/hook"), ns["ForwardHandler"])


@exercises("docs_src/consumers/handlers.py")
@pytest.mark.anyio
async def test_consumer_handlers_through_the_in_memory_broker() -> None:
    ns = run("docs_src/consumers/handlers.py")
    broker = InMemoryBroker()
    broker.publish("orders", "order.placed", {"id": 1, "total": 30})
    broker.publish("orders", "order.placed", {"id": 2, "total": -5})
    report = await broker.consume("orders", ns["billing"], max_attempts=2)
    assert ns["invoiced"] == [1]
    assert (report.handled, report.dead_lettered) == (1, 1)
    [(name, order, reason)] = broker.dead_letters("orders")
    assert (name, order["id"]) == ("order.placed", 2)
    assert "negative total" in reason


@exercises("docs_src/outbox/app.py")
def test_outbox_handles_committed_events_only(fresh_local_handler, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    ns = run("docs_src/outbox/app.py")
    with TestClient(ns["app"]) as client:
        assert client.post("/orders/1").json() == {"id": 1}
        assert client.post("/orders/-2").json() == {"id": -2}  # rolled back
        assert client.get("/orders").json() == [1]
    assert ns["shipped"] == [1]


@exercises("docs_src/outbox/inbox.py")
@pytest.mark.anyio
async def test_inbox_applies_a_redelivered_event_once(tmp_path: Path) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from fastapi_events.codec import attributes_for, encode_event

    ns = run("docs_src/outbox/inbox.py")
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'inbox.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(ns["metadata"].create_all)
    ns["register"](engine)
    broker = InMemoryBroker()
    event = ("order.placed", {"order_id": 7})
    for _ in range(2):  # the same event twice, as a broker redelivers it
        broker.publish_raw("orders", encode_event(event), attributes_for(event, "event-7"))
    report = await broker.consume("orders", ns["billing"])
    await engine.dispose()
    assert report.handled == 2
    assert ns["applied"] == [7]


@exercises("docs_src/inspector/mount.py")
def test_inspector_is_refused_to_strangers_unless_authorized() -> None:
    from starlette.routing import Mount

    ns = run("docs_src/inspector/mount.py")
    try:
        with TestClient(ns["app"]) as client:  # TestClient's client address is not loopback
            assert client.get("/_events/api/events").status_code == 403
            assert client.get("/ops/events/api/events").status_code == 403
            allowed = client.get("/ops/events/api/events", headers={"authorization": "Bearer let-me-in"})
    finally:
        for route in ns["app"].routes:  # a page's request started recording: stop it (mounts get no lifespan)
            if isinstance(route, Mount):
                route.app.__self__.recorder.close()
    assert allowed.status_code == 200
    assert "events" in allowed.json()


@exercises("docs_src/otel/setup.py")
def test_opentelemetry_spans(fresh_local_handler) -> None:
    from fastapi_events.otel import uninstrument

    ns = run("docs_src/otel/setup.py")
    try:
        with TestClient(ns["app"]) as client:
            assert client.post("/orders").json() == {"ok": True}
    finally:
        uninstrument()
    assert "send order.placed" in [span.name for span in ns["spans"].get_finished_spans()]


@pytest.mark.fastapi
def test_example_test_modules_pass(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TEST_MODULES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(TEST_MODULES) + 1} passed" in result.stdout  # test_capture.py holds two tests
