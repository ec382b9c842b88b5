"""Spans and trace-context propagation, asserted precisely with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import copy
import pickle
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.trace import SpanKind, StatusCode

from fastapi_events import _hooks, dispatch
from fastapi_events.codec import attributes_for
from fastapi_events.delivery import OutboundMessage
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.otel import TracedEvent, extract_context, inject_headers
from fastapi_events.otel import _attributes as attr
from fastapi_events.testing import InMemoryBroker

from .conftest import Telemetry


def _app(telemetry: Telemetry, *handlers: Any, events: list[tuple[str, Any]]) -> FastAPI:
    """An app whose route dispatches ``events`` under a manual SERVER span named ``GET /``."""
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=list(handlers))
    tracer = telemetry.tracer_provider.get_tracer("test-server")

    @app.get("/")
    async def root() -> dict[str, str]:
        with tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
            for name, payload in events:
                dispatch(name, payload=payload)
        return {"ok": "yes"}

    return app


def test_dispatch_and_handler_spans_join_the_request_trace(telemetry: Telemetry) -> None:
    handler = LocalHandler()
    payload = {"id": 7, "tags": ["a"]}
    seen: list[Any] = []

    @handler.register("user.created")
    async def on_created(event: Any) -> None:
        name, body = event  # plain 2-tuple unpacking still works
        seen.append((name, body, len(event)))

    with TestClient(_app(telemetry, handler, events=[("user.created", payload)])) as client:
        assert client.get("/").status_code == 200

    request = telemetry.span("GET /")
    sent = telemetry.span("send user.created")
    processed = telemetry.span(f"process user.created {on_created.__module__}.{on_created.__qualname__}")

    assert sent.kind is SpanKind.PRODUCER
    assert sent.parent is not None
    assert sent.parent.span_id == request.context.span_id
    assert dict(sent.attributes or {}) == {
        attr.MESSAGING_SYSTEM: "fastapi_events",
        attr.MESSAGING_DESTINATION_NAME: "user.created",
        attr.MESSAGING_OPERATION_TYPE: "send",
        attr.MESSAGING_OPERATION_NAME: "send",
    }
    assert processed.kind is SpanKind.CONSUMER
    assert processed.parent is not None
    assert processed.parent.span_id == sent.context.span_id
    assert processed.context.trace_id == sent.context.trace_id == request.context.trace_id
    assert processed.attributes is not None
    assert processed.attributes[attr.MESSAGING_OPERATION_TYPE] == "process"
    assert processed.attributes[attr.HANDLER] == f"{on_created.__module__}.{on_created.__qualname__}"
    assert processed.status.status_code is StatusCode.UNSET
    # The payload travels untouched: same object, no tracing keys added.
    assert seen == [("user.created", payload, 2)]
    assert seen[0][1] is payload
    assert payload == {"id": 7, "tags": ["a"]}


def test_failing_handler_span_has_error_status_and_exception(telemetry: Telemetry) -> None:
    handler = LocalHandler()

    @handler.register("order.paid")
    async def explode(event: Any) -> None:
        raise ValueError("card declined")

    @handler.register("order.paid")
    def sync_ok(event: Any) -> None:
        return None

    with TestClient(_app(telemetry, handler, events=[("order.paid", {"n": 1})])) as client:
        client.get("/")

    failed = telemetry.span(f"process order.paid {explode.__module__}.{explode.__qualname__}")
    ok = telemetry.span(f"process order.paid {sync_ok.__module__}.{sync_ok.__qualname__}")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ValueError: card declined"
    assert failed.attributes is not None
    assert failed.attributes[attr.ERROR_TYPE] == "ValueError"
    exceptions = [e for e in failed.events if e.name == "exception"]
    assert len(exceptions) == 1
    assert exceptions[0].attributes is not None
    assert exceptions[0].attributes["exception.type"] == "ValueError"
    assert exceptions[0].attributes["exception.message"] == "card declined"
    # The sync handler ran in a worker thread and still got the dispatch span as its parent.
    sent = telemetry.span("send order.paid")
    assert ok.status.status_code is StatusCode.UNSET
    assert ok.parent is not None
    assert ok.parent.span_id == sent.context.span_id


def test_handler_span_is_current_inside_the_handler(telemetry: Telemetry) -> None:
    handler = LocalHandler()
    inner_parents: list[int] = []
    tracer = telemetry.tracer_provider.get_tracer("user-code")

    @handler.register("job")
    def run_job(event: Any) -> None:
        with tracer.start_as_current_span("db query") as span:
            inner_parents.append(span.parent.span_id if span.parent else 0)

    with TestClient(_app(telemetry, handler, events=[("job", None)])) as client:
        client.get("/")
    processed = telemetry.span(f"process job {run_job.__module__}.{run_job.__qualname__}")
    assert inner_parents == [processed.context.span_id]


def test_traced_event_behaves_like_the_plain_tuple(telemetry: Telemetry) -> None:
    captured: list[Any] = []
    handler = LocalHandler()

    @handler.register("*")
    async def grab(event: Any) -> None:
        captured.append(event)

    with TestClient(_app(telemetry, handler, events=[("a.b", {"x": 1})])) as client:
        client.get("/")
    (event,) = captured
    assert isinstance(event, TracedEvent)
    assert isinstance(event, tuple)
    assert event == ("a.b", {"x": 1})
    assert len(event) == 2
    assert repr(event) == repr(("a.b", {"x": 1}))
    assert hash(("a.b", 1)) == hash(TracedEvent("a.b", 1, event.otel_context))
    assert pickle.loads(pickle.dumps(event)) == ("a.b", {"x": 1})
    assert type(pickle.loads(pickle.dumps(event))) is tuple
    assert copy.deepcopy(event) == event


def test_trace_context_goes_into_message_attributes(telemetry: Telemetry) -> None:
    handler = LocalHandler()
    captured: list[Any] = []

    @handler.register("*")
    async def grab(event: Any) -> None:
        captured.append(event)

    with TestClient(_app(telemetry, handler, events=[("a.b", {"x": 1})])) as client:
        client.get("/")
    (event,) = captured
    sent = telemetry.span("send a.b")
    flags = int(sent.context.trace_flags)
    traceparent = f"00-{sent.context.trace_id:032x}-{sent.context.span_id:016x}-{flags:02x}"
    assert inject_headers(event) == {"traceparent": traceparent}
    # The codec (used by every forwarder) reads the same context from the event.
    assert attributes_for(event, "id-1")["traceparent"] == traceparent
    # And it comes back out on the consuming side, also from bytes headers with other casing (Kafka).
    from opentelemetry import trace

    context = extract_context({"TraceParent": traceparent.encode()})
    assert context is not None
    assert trace.get_current_span(context).get_span_context().span_id == sent.context.span_id


def _forwarding_app(telemetry: Telemetry, broker: InMemoryBroker, events: list[tuple[str, Any]]) -> FastAPI:
    return _app(telemetry, broker.forwarder("events-queue"), events=events)


def _consume(broker: InMemoryBroker, handler: LocalHandler) -> int:
    """The real consumer over the broker's topic, one message at a time; returns how many were handled."""
    return asyncio.run(broker.consume("events-queue", handler, concurrency=1)).handled


def test_forward_batch_span_and_consumer_span_linked_by_default(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FASTAPI_EVENTS_USE_SPAN_LINKING", raising=False)
    broker = InMemoryBroker()
    with TestClient(_forwarding_app(telemetry, broker, [("a.one", 1), ("a.two", 2)])) as client:
        client.get("/")
    message_ids = broker.snapshot("events-queue").waiting  # in the order they were sent
    consumer_side = LocalHandler()
    handled: list[Any] = []

    @consumer_side.register("a.*")
    async def on_a(event: Any) -> None:
        handled.append(tuple(event))

    assert _consume(broker, consumer_side) == 2
    assert handled == [("a.one", 1), ("a.two", 2)]

    request = telemetry.span("GET /")
    sends = {name: telemetry.span(f"send {name}") for name in ("a.one", "a.two")}
    forward = telemetry.span("publish events-queue")
    assert forward.kind is SpanKind.PRODUCER
    assert forward.attributes is not None
    assert forward.attributes[attr.MESSAGING_SYSTEM] == "memory"
    assert forward.attributes[attr.MESSAGING_DESTINATION_NAME] == "events-queue"
    assert forward.attributes[attr.MESSAGING_OPERATION_TYPE] == "publish"
    assert forward.attributes[attr.MESSAGING_BATCH_MESSAGE_COUNT] == 2
    # Both messages come from one request: the batch span continues that trace and links to each dispatch.
    assert forward.context.trace_id == request.context.trace_id
    assert {link.context.span_id for link in forward.links} == {s.context.span_id for s in sends.values()}
    assert [link.attributes[attr.MESSAGING_MESSAGE_ID] for link in forward.links] == message_ids  # type: ignore[index]

    consumed = [s for s in telemetry.spans() if s.name == "process events-queue"]
    assert len(consumed) == 2
    for span, message_id, name in zip(consumed, message_ids, ("a.one", "a.two"), strict=True):
        assert span.kind is SpanKind.CONSUMER
        assert span.attributes is not None
        assert span.attributes[attr.MESSAGING_MESSAGE_ID] == message_id
        assert span.attributes[attr.EVENT_ID] == message_id  # the forwarder's id travels as an attribute
        assert span.attributes[attr.MESSAGING_OPERATION_TYPE] == "process"
        assert span.attributes[attr.MESSAGING_SYSTEM] == "memory"
        assert span.attributes[attr.EVENT_NAME] == name
        # Linked, not parented: a trace of its own pointing at the dispatch span.
        assert span.parent is None
        assert span.context.trace_id != request.context.trace_id
        assert [link.context.span_id for link in span.links] == [sends[name].context.span_id]
        # The handlers run on the consumer side are children of the message span.
        handled_span = next(
            s
            for s in telemetry.spans()
            if s.name.startswith(f"process {name} ") and s.context.trace_id == span.context.trace_id
        )
        assert handled_span.parent is not None
        assert handled_span.parent.span_id == span.context.span_id


def test_consumer_span_is_child_when_linking_is_off(telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTAPI_EVENTS_USE_SPAN_LINKING", "0")
    broker = InMemoryBroker()
    with TestClient(_forwarding_app(telemetry, broker, [("b.one", {"k": "v"})])) as client:
        client.get("/")
    [message_id] = broker.snapshot("events-queue").waiting
    worker = LocalHandler()
    worker.register(lambda event: None, event_name="b.*")
    assert _consume(broker, worker) == 1
    request = telemetry.span("GET /")
    sent = telemetry.span("send b.one")
    consumed = telemetry.span("process events-queue")
    forward = telemetry.span("publish events-queue")
    assert forward.attributes is not None
    assert forward.attributes[attr.MESSAGING_MESSAGE_ID] == message_id
    assert consumed.parent is not None
    assert consumed.parent.span_id == sent.context.span_id
    assert consumed.context.trace_id == request.context.trace_id
    assert list(consumed.links) == []


def test_batch_from_several_traces_starts_its_own_trace(telemetry: Telemetry) -> None:
    from opentelemetry import trace

    tracer = telemetry.tracer_provider.get_tracer("test")
    messages = []
    roots = []
    for n in range(2):
        with tracer.start_as_current_span(f"request {n}") as root:
            roots.append(root)
            messages.append(OutboundMessage(f"id{n}", "e", b"[]", inject_headers(("e", n))))
    messages.append(OutboundMessage("id-untraced", "e", b"[]", {}))
    with (
        tracer.start_as_current_span("unrelated ambient span"),
        _hooks.forward_batch("loopback", "q", messages),
    ):
        inner = trace.get_current_span()
    forward = telemetry.span("publish q")
    assert inner.get_span_context().span_id == forward.context.span_id  # current while sending
    assert forward.parent is None  # neither one request's trace nor the sender task's ambient context
    assert forward.context.trace_id not in {r.get_span_context().trace_id for r in roots}
    assert [link.context.span_id for link in forward.links] == [r.get_span_context().span_id for r in roots]
    assert forward.attributes is not None
    assert forward.attributes[attr.MESSAGING_BATCH_MESSAGE_COUNT] == 3
    assert attr.MESSAGING_MESSAGE_ID not in forward.attributes


def test_forward_span_records_a_failed_send(telemetry: Telemetry) -> None:
    message = OutboundMessage("id", "e", b"[]", {})
    with pytest.raises(ConnectionError), _hooks.forward_batch("loopback", "q", [message]):
        raise ConnectionError("broker down")
    forward = telemetry.span("publish q")
    assert forward.status.status_code is StatusCode.ERROR
    assert forward.parent is None


def test_nothing_recorded_after_uninstrument(telemetry: Telemetry) -> None:
    from fastapi_events import otel

    otel.uninstrument()
    handler = LocalHandler()
    captured: list[Any] = []

    @handler.register("*")
    async def grab(event: Any) -> None:
        captured.append(event)

    with TestClient(_app(telemetry, handler, events=[("z", 1)])) as client:
        client.get("/")
    assert [s.name for s in telemetry.spans()] == ["GET /"]
    assert type(captured[0]) is tuple


def test_dispatch_that_raises_leaves_no_span(telemetry: Telemetry) -> None:
    from fastapi_events.errors import NoEventContextError

    with pytest.raises(NoEventContextError):
        dispatch("nowhere", payload={})
    assert telemetry.spans() == []
    assert telemetry.points(attr.METRIC_DISPATCHED) == []
