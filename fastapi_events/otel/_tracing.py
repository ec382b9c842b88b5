"""Spans for every hop of an event: dispatch, local handlers, forwarder batches, consumed messages.

Only imported once OpenTelemetry is known to be importable and a tracer provider is configured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer

from .._event_meta import IdentifiedEvent
from ..codec import ATTR_EVENT_ID
from . import _attributes as attr
from ._propagation import TracedEvent, _inject, extract_context, use_span_linking

# A batch of thousands of messages would otherwise make one span carry thousands of links.
MAX_LINKS = 128


def fail_span(span: Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    span.set_attribute(attr.ERROR_TYPE, type(exc).__qualname__)


class ActiveSpan:
    """A started span made current until ``close()``; failing marks it as errored."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span, parent: Context | None) -> None:
        self.span = span
        self.token = otel_context.attach(trace.set_span_in_context(span, parent))

    def close(self, exc: BaseException | None) -> None:
        if exc is not None:
            fail_span(self.span, exc)
        self.span.end()
        otel_context.detach(self.token)


class Tracing:
    """Span factory bound to one tracer; attribute dicts are cached per event name / handler.

    In process the event name is ``messaging.destination.name``: repeating it as another attribute would
    only add to the SDK's per-attribute cost, which dominates what a span costs.
    """

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self._dispatch: dict[str, tuple[str, dict[str, Any]]] = {}
        self._handler: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}

    # -- in process ---------------------------------------------------------------------------------------
    def dispatch(self, event_name: str, event: tuple[Any, Any]) -> TracedEvent | IdentifiedEvent:
        """A PRODUCER span for ``dispatch()``, parented on the caller's current span (the request's)."""
        cached = self._dispatch.get(event_name)
        if cached is None:
            cached = (
                attr.dispatch_span_name(event_name),
                {
                    attr.MESSAGING_SYSTEM: attr.IN_PROCESS_SYSTEM,
                    attr.MESSAGING_DESTINATION_NAME: event_name,
                    attr.MESSAGING_OPERATION_TYPE: attr.OPERATION_SEND,
                    attr.MESSAGING_OPERATION_NAME: attr.OPERATION_SEND,
                },
            )
            _bounded_put(self._dispatch, event_name, cached)
        span = self.tracer.start_span(cached[0], kind=SpanKind.PRODUCER, attributes=cached[1])
        # Dispatch only hands the event over; the span ends here and its context travels with the event, so
        # handlers (and, via message headers, consumers) join the request's trace however late they run.
        carried = trace.set_span_in_context(span)
        span.end()
        if isinstance(event, IdentifiedEvent):
            # Received with its sender's id (a webhook): handlers and forwarders must keep seeing that id.
            return IdentifiedEvent(
                event[0], event[1], event.event_id, event.dispatched_at, event.attempt, _inject(carried)
            )
        return TracedEvent(event[0], event[1], carried)

    def handler(self, event: Any, event_name: str, handler: str) -> ActiveSpan:
        """A CONSUMER span around one local handler function, child of the event's dispatch span."""
        key = (event_name, handler)
        cached = self._handler.get(key)
        if cached is None:
            cached = (
                attr.handler_span_name(event_name, handler),
                {
                    attr.MESSAGING_SYSTEM: attr.IN_PROCESS_SYSTEM,
                    attr.MESSAGING_DESTINATION_NAME: event_name,
                    attr.MESSAGING_OPERATION_TYPE: attr.OPERATION_PROCESS,
                    attr.MESSAGING_OPERATION_NAME: attr.OPERATION_PROCESS,
                    attr.HANDLER: handler,
                },
            )
            _bounded_put(self._handler, key, cached)
        # Events dispatched before tracing started, or decoded by a consumer, carry no context: the current
        # one (the consumer's message span) is the parent then.
        parent: Context | None = getattr(event, "otel_context", None)
        span = self.tracer.start_span(cached[0], context=parent, kind=SpanKind.CONSUMER, attributes=cached[1])
        return ActiveSpan(span, parent)

    # -- across a broker ----------------------------------------------------------------------------------
    def forward_batch(self, system: str, destination: str, messages: Sequence[Any]) -> ActiveSpan:
        """A PRODUCER span around one ``send_batch``: linked to every message's dispatch span.

        The forwarder's sender task runs detached from any request, so its ambient context means nothing. The
        span continues the dispatching trace when every message of the batch comes from that one trace (the
        usual single-request batch) and starts a trace of its own otherwise; the links relate it to all.
        """
        links: list[Link] = []
        parent: Context | None = None
        trace_ids: set[int] = set()
        for message in messages[:MAX_LINKS]:
            headers = getattr(message, "attributes", None)
            remote = extract_context(headers) if headers else None
            if remote is None:
                continue
            span_context = trace.get_current_span(remote).get_span_context()
            if not span_context.is_valid:
                continue
            if parent is None:
                parent = remote
            trace_ids.add(span_context.trace_id)
            message_id = getattr(message, "id", None)
            link_attributes = {attr.MESSAGING_MESSAGE_ID: message_id} if message_id else None
            links.append(Link(span_context, link_attributes))
        if len(trace_ids) != 1:
            parent = Context()
        attributes: dict[str, Any] = {
            attr.MESSAGING_SYSTEM: system,
            attr.MESSAGING_DESTINATION_NAME: destination,
            attr.MESSAGING_OPERATION_TYPE: attr.OPERATION_PUBLISH,
            attr.MESSAGING_OPERATION_NAME: attr.OPERATION_PUBLISH,
            attr.MESSAGING_BATCH_MESSAGE_COUNT: len(messages),
        }
        if len(messages) == 1:
            message_id = getattr(messages[0], "id", None)
            if message_id:
                attributes[attr.MESSAGING_MESSAGE_ID] = message_id
        span = self.tracer.start_span(
            attr.forward_span_name(destination),
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes=attributes,
            links=links,
        )
        return ActiveSpan(span, parent)

    def consume(
        self, system: str, destination: str, message_id: str, event_name: str, headers: Mapping[str, Any]
    ) -> ActiveSpan:
        """A CONSUMER span around a consumer's handling of one message.

        By default it starts its own trace (or continues the consumer's ambient one) and *links* to the
        dispatching request's span: one long-lived request trace per event would otherwise absorb every retry
        and redelivery. ``FASTAPI_EVENTS_USE_SPAN_LINKING=0`` makes it a child of the dispatch span instead.
        """
        remote = extract_context(headers)
        span_context = trace.get_current_span(remote).get_span_context() if remote is not None else None
        valid = span_context is not None and span_context.is_valid
        links: list[Link] = []
        parent: Context | None = None
        if valid and not use_span_linking():
            parent = remote
        elif valid:
            assert span_context is not None
            links.append(Link(span_context))
        attributes: dict[str, Any] = {
            attr.MESSAGING_SYSTEM: system,
            attr.MESSAGING_DESTINATION_NAME: destination,
            attr.MESSAGING_OPERATION_TYPE: attr.OPERATION_PROCESS,
            attr.MESSAGING_OPERATION_NAME: attr.OPERATION_PROCESS,
            attr.EVENT_NAME: event_name,
        }
        if message_id:
            attributes[attr.MESSAGING_MESSAGE_ID] = message_id
        event_id = headers.get(ATTR_EVENT_ID)
        if isinstance(event_id, str) and event_id:
            attributes[attr.EVENT_ID] = event_id
        span = self.tracer.start_span(
            attr.consume_span_name(destination),
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )
        return ActiveSpan(span, parent)


_CACHE_LIMIT = 4096


def _bounded_put(cache: dict[Any, Any], key: Any, value: Any) -> None:
    # Event names built from data must not grow the cache forever.
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


__all__ = ["MAX_LINKS", "ActiveSpan", "Tracing", "fail_span"]
