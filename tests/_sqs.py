"""A real SQS consumer for tests: receives (and deletes) what the forwarders sent to moto_server."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3

from fastapi_events.codec import ATTR_EVENT_ID, ATTR_EVENT_NAME


@dataclass
class Received:
    body: str
    attributes: dict[str, str]
    raw: dict[str, Any]

    @property
    def event(self) -> Any:
        return json.loads(self.body)

    @property
    def event_id(self) -> str:
        return self.attributes[ATTR_EVENT_ID]

    @property
    def event_name(self) -> str:
        return self.attributes[ATTR_EVENT_NAME]


@dataclass
class Queue:
    """One queue on a moto server, with a consumer that remembers everything it received."""

    client_kwargs: dict[str, str]
    name: str = field(default_factory=lambda: f"q-{uuid.uuid4().hex[:12]}")
    attributes: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = boto3.client("sqs", **self.client_kwargs)
        self.create()

    def create(self) -> str:
        attributes = dict(self.attributes)
        if self.name.endswith(".fifo"):
            attributes.setdefault("FifoQueue", "true")
        self.url: str = self.client.create_queue(QueueName=self.name, Attributes=attributes)["QueueUrl"]
        return self.url

    @property
    def handler_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``SQSForwardHandler``/``SQSTransport`` besides queue and region."""
        return {k: v for k, v in self.client_kwargs.items() if k != "region_name"}

    @property
    def region(self) -> str:
        return self.client_kwargs["region_name"]

    def poll(self) -> int:
        """Receive and delete one round of messages; returns how many arrived."""
        response = self.client.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        messages = response.get("Messages", [])
        for m in messages:
            attributes = {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}
            self.received.append(Received(m["Body"], attributes, m))
        if messages:
            self.client.delete_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
        return len(messages)

    def receive(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Poll until ``count`` messages in total were received (or the timeout); returns all received."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            if not self.poll():
                time.sleep(0.05)
        return self.received

    def drain_rest(self, settle: float = 0.5) -> list[Received]:
        """Receive whatever else is in the queue (to check that nothing unexpected was sent)."""
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle:
            if self.poll():
                quiet_since = time.monotonic()
            else:
                time.sleep(0.05)
        return self.received

    def payloads(self) -> list[Any]:
        return [r.event[1] for r in self.received]
