"""``/asyncapi.json`` against the official AsyncAPI 3.0.0 JSON schema.

``asyncapi-3.0.0.schema.json`` is ``schemas/3.0.0-without-$id.json`` of the npm package ``@asyncapi/specs`` 6.11.1
(Apache-2.0, see ``asyncapi-specs.LICENSE`` and ``asyncapi-specs.NOTICE`` beside it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from fastapi_events import drain
from fastapi_events.handlers.aws import SQSForwardHandler
from tests._servers import MotoServer
from tests._sqs import Queue

from ._app import make_app
from .conftest import ClientFactory

pytestmark = pytest.mark.anyio

SCHEMA = json.loads((Path(__file__).parent / "asyncapi-3.0.0.schema.json").read_text())


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in all_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in all_refs(value)]
    return []


async def test_document_is_valid_asyncapi_3_and_describes_the_app(
    client_for: ClientFactory, moto_server: MotoServer
) -> None:
    queue = Queue(dict(moto_server.client_kwargs), name="orders-queue")
    forwarder = SQSForwardHandler(queue.name, queue.region, **queue.handler_kwargs)
    app = make_app(forwarder=forwarder)
    async with client_for(app) as client:
        await client.get("/_events/api/events")
        await client.post("/events/shipment.sent", json=[{"id": 1}])
        await drain(5)
        response = await client.get("/_events/asyncapi.json")
    await forwarder.shutdown(5)
    assert forwarder.stats.delivered == 1
    document = response.json()
    jsonschema.Draft7Validator(SCHEMA).validate(document)

    assert document["info"]["title"] == "inspector test app"
    assert document["info"]["version"] == "1.2.3"
    # Every reference resolves inside the document (pydantic's $defs were moved to components.schemas).
    for ref in all_refs(document):
        resolve(document, ref)
    channels = {channel["address"]: channel for channel in document["channels"].values()}
    assert {"order.placed", "order.cancelled", "shipment.sent", "order.*", "payment.*", "orders-queue"} <= set(channels)
    placed = resolve(document, channels["order.placed"]["messages"]["order.placed"]["$ref"])
    assert placed["name"] == "order.placed"
    assert resolve(document, placed["payload"]["properties"]["lines"]["items"]["$ref"])["properties"]["sku"]
    cancelled = resolve(document, channels["order.cancelled"]["messages"]["order.cancelled"]["$ref"])
    assert cancelled["payload"]["required"] == ["order_id"]
    # The pattern channel carries the messages of every known name it matches.
    assert set(channels["order.*"]["messages"]) == {"order.placed", "order.cancelled"}
    operations = document["operations"].values()
    # The document covers every middleware alive in the process; other tests' apps may still be (cycles), so look
    # at the receive operations of this app's own handler functions.
    receive = [op for op in operations if op["action"] == "receive" and "tests.inspector._app." in op["summary"]]
    send = [op for op in operations if op["action"] == "send"]
    assert {resolve(document, op["channel"]["$ref"])["address"] for op in receive} == {"order.*", "payment.*", "slow.*"}
    sent_to = {resolve(document, op["channel"]["$ref"])["address"] for op in send}
    assert {"order.placed", "order.cancelled", "shipment.sent", "orders-queue"} <= sent_to
    for op in operations:  # an operation's messages belong to its channel
        for message in op["messages"]:
            assert message["$ref"].startswith(op["channel"]["$ref"] + "/messages/")


async def test_schema_rejects_a_broken_document() -> None:
    # The vendored schema is really checking: an operation without a channel is not AsyncAPI 3.
    broken = {"asyncapi": "3.0.0", "info": {"title": "t", "version": "1"}, "operations": {"x": {"action": "send"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(broken)
