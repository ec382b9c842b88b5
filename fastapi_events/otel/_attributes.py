"""Span and metric names and attribute keys (OpenTelemetry messaging semantic conventions where they exist).

Plain strings, no OpenTelemetry import: the delivery layer and tests can use them without the API installed.
"""

from __future__ import annotations

# Messaging semantic conventions (https://opentelemetry.io/docs/specs/semconv/messaging/).
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_DESTINATION_NAME = "messaging.destination.name"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_MESSAGE_ID = "messaging.message.id"
MESSAGING_BATCH_MESSAGE_COUNT = "messaging.batch.message_count"
ERROR_TYPE = "error.type"

# Ours: the event name and the handler's qualified name (``module.QualName``).
EVENT_NAME = "fastapi_events.event_name"
HANDLER = "fastapi_events.handler"
EVENT_ID = "fastapi_events.event_id"  # the producer's stable id; a broker may assign its own message id
CONSUMER_PARTITION = "fastapi_events.consumer.partition"

#: ``messaging.system`` of the in-process hop (dispatch -> local handlers); brokers use their own value.
IN_PROCESS_SYSTEM = "fastapi_events"

OPERATION_SEND = "send"  # dispatch(): the event is handed to the middleware's buffer
OPERATION_PUBLISH = "publish"  # a forwarder sends a batch to a broker
OPERATION_RECEIVE = "receive"
OPERATION_PROCESS = "process"  # a local handler or a consumer handles one event

# Metric instrument names.
METRIC_DISPATCHED = "fastapi_events.events.dispatched"
METRIC_HANDLED = "fastapi_events.events.handled"
METRIC_FAILED = "fastapi_events.events.failed"
METRIC_DEAD_LETTERED = "fastapi_events.events.dead_lettered"
METRIC_HANDLER_DURATION = "fastapi_events.handler.duration"
METRIC_QUEUE_DEPTH = "fastapi_events.forwarder.queue.depth"
METRIC_CONSUMER_LAG = "fastapi_events.consumer.lag"

INSTRUMENTATION_NAME = "fastapi_events"


def dispatch_span_name(event_name: str) -> str:
    return f"{OPERATION_SEND} {event_name}"


def handler_span_name(event_name: str, handler: str) -> str:
    return f"{OPERATION_PROCESS} {event_name} {handler}"


def forward_span_name(destination: str) -> str:
    return f"{OPERATION_PUBLISH} {destination}"


def consume_span_name(destination: str) -> str:
    return f"{OPERATION_PROCESS} {destination}"


__all__ = [
    "CONSUMER_PARTITION",
    "ERROR_TYPE",
    "EVENT_ID",
    "EVENT_NAME",
    "HANDLER",
    "INSTRUMENTATION_NAME",
    "IN_PROCESS_SYSTEM",
    "MESSAGING_BATCH_MESSAGE_COUNT",
    "MESSAGING_DESTINATION_NAME",
    "MESSAGING_MESSAGE_ID",
    "MESSAGING_OPERATION_NAME",
    "MESSAGING_OPERATION_TYPE",
    "MESSAGING_SYSTEM",
    "METRIC_CONSUMER_LAG",
    "METRIC_DEAD_LETTERED",
    "METRIC_DISPATCHED",
    "METRIC_FAILED",
    "METRIC_HANDLED",
    "METRIC_HANDLER_DURATION",
    "METRIC_QUEUE_DEPTH",
    "OPERATION_PROCESS",
    "OPERATION_PUBLISH",
    "OPERATION_RECEIVE",
    "OPERATION_SEND",
    "consume_span_name",
    "dispatch_span_name",
    "forward_span_name",
    "handler_span_name",
]
