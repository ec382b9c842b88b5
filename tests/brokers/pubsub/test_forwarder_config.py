"""GoogleCloudSimplePubSubHandler and PubSubTransport without a server: API, limits, error classification."""

from __future__ import annotations

import inspect
from typing import Any

import grpc
import pytest
from google.api_core import exceptions as api_exceptions
from google.cloud.pubsub_v1.publisher import exceptions as publisher_exceptions
from google.pubsub_v1 import types as gapic_types

from fastapi_events.brokers.pubsub import (
    SERVER_MAX_REQUEST_BYTES,
    PubSubTransport,
    classify,
    encoded_message_size,
)
from fastapi_events.delivery import ForwardHandler, OutboundMessage, Outcome, Transport
from fastapi_events.errors import ConfigurationError
from fastapi_events.handlers.gcp import GoogleCloudSimplePubSubHandler


def test_signature_is_compatible_with_0x() -> None:
    params = list(inspect.signature(GoogleCloudSimplePubSubHandler).parameters.values())
    positional = [(p.name, p.default) for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == [
        ("project_id", inspect.Parameter.empty),
        ("topic_id", inspect.Parameter.empty),
        ("max_batch_size", 1000),
        ("batch_settings_kwargs", None),
        ("serializer", None),
    ]
    # Everything new is keyword-only, so positional 0.x calls keep their meaning.
    assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in params[5:])


def test_defaults_and_batch_settings_none() -> None:
    handler = GoogleCloudSimplePubSubHandler("proj", "topic", 1000, None, None)
    assert isinstance(handler, ForwardHandler)
    assert isinstance(handler.transport, Transport)
    assert handler.topic_path == "projects/proj/topics/topic"
    transport = handler.transport
    assert transport.system == "gcp_pubsub"
    assert transport.max_batch_count == 1000
    overhead = len("projects/proj/topics/topic") + 2
    assert transport.max_batch_bytes == SERVER_MAX_REQUEST_BYTES - overhead
    assert transport.max_message_bytes == SERVER_MAX_REQUEST_BYTES - overhead


def test_batch_settings_kwargs_size_both_layers() -> None:
    handler = GoogleCloudSimplePubSubHandler(
        "proj", "topic", max_batch_size=50, batch_settings_kwargs={"max_bytes": 100_000, "max_latency": 0.2}
    )
    transport = handler.transport
    assert isinstance(transport, PubSubTransport)
    assert transport.max_batch_count == 50
    assert transport.max_batch_bytes < 100_000
    # The client gets one spare slot: it cuts a batch when the count *reaches* max_messages.
    assert transport._batch_settings.max_messages == 51
    assert transport._batch_settings.max_latency == 0.2


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("", "topic"), {}),
        (("proj", ""), {}),
        (("proj", "topic", 0), {}),
        (("proj", "topic", 1001), {}),  # the service takes at most 1000 messages per publish request
        (("proj", "topic"), {"batch_settings_kwargs": {"max_messages": 5000}}),
        (("proj", "topic"), {"batch_settings_kwargs": {"max_bytes": 20_000_000}}),
        (("proj", "topic"), {"batch_settings_kwargs": {"no_such_setting": 1}}),
        (("proj", "topic"), {"batch_settings_kwargs": {"max_latency": -1}}),
    ],
)
def test_bad_configuration_is_refused(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        GoogleCloudSimplePubSubHandler(*args, **kwargs)


def test_ordering_key_enables_message_ordering() -> None:
    plain = GoogleCloudSimplePubSubHandler("p", "t").transport
    ordered = GoogleCloudSimplePubSubHandler("p", "t", ordering_key=lambda e: str(e[1])).transport
    assert isinstance(plain, PubSubTransport)
    assert isinstance(ordered, PubSubTransport)
    assert not plain._publisher_options.enable_message_ordering
    assert ordered._publisher_options.enable_message_ordering
    message = OutboundMessage("id", "e", b"{}", {}, key="k1")
    # Without ordering enabled the client would refuse a key: it is not sent at all.
    assert plain.message_size(message) < ordered.message_size(message)


@pytest.mark.parametrize(
    ("data", "attributes", "key"),
    [
        (b"", {}, ""),
        (b"x" * 127, {"event_name": "a"}, ""),
        (b"x" * 128, {"event_name": "\u00e9" * 70, "event_id": "0" * 32}, "user-1"),
        (b"y" * 300_000, {"k" * 300: "v" * 20_000}, "kk"),
    ],
)
def test_message_size_matches_protobuf(data: bytes, attributes: dict[str, str], key: str) -> None:
    message = gapic_types.PubsubMessage(data=data, attributes=attributes, ordering_key=key)
    exact = gapic_types.PublishRequest(messages=[message])._pb.ByteSize()
    estimate = encoded_message_size(data, attributes, key)
    # Exact except that empty data is counted (2 bytes): never below the real size.
    assert exact <= estimate <= exact + 2


def _grpc_error(code: grpc.StatusCode, text: str = "boom") -> api_exceptions.GoogleAPICallError:
    exc = api_exceptions.from_grpc_status(code, text)
    assert isinstance(exc, api_exceptions.GoogleAPICallError)
    return exc


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNAUTHENTICATED,
    ],
)
def test_transient_errors_are_retried(code: grpc.StatusCode) -> None:
    result = classify(_grpc_error(code))
    assert result.outcome is Outcome.RETRY
    assert code.name in result.reason


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
    ],
)
def test_permanent_errors_are_dead_lettered_with_reason(code: grpc.StatusCode) -> None:
    result = classify(_grpc_error(code, "Topic not found"))
    assert result.outcome is Outcome.PERMANENT
    assert result.reason == f"{code.name}: Topic not found"


def test_client_side_errors() -> None:
    too_large = classify(publisher_exceptions.MessageTooLargeError("too big"))
    assert too_large.outcome is Outcome.PERMANENT
    assert "too large" in too_large.reason
    assert classify(TypeError("attributes must be text")).outcome is Outcome.PERMANENT
    paused = publisher_exceptions.PublishToPausedOrderingKeyException("k")
    assert classify(paused).outcome is Outcome.RETRY
    assert classify(RuntimeError("Cannot publish on a stopped publisher.")).outcome is Outcome.RETRY
    # REST transport errors carry no gRPC status: HTTP 4xx is the caller's fault, 429/5xx are not.
    assert classify(api_exceptions.Forbidden("no")).outcome is Outcome.PERMANENT
    assert classify(api_exceptions.TooManyRequests("slow down")).outcome is Outcome.RETRY
    assert classify(api_exceptions.BadGateway("oops")).outcome is Outcome.RETRY
