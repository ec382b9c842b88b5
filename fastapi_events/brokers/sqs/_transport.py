"""Amazon SQS transport: boto3 in a dedicated worker thread, ``send_message_batch`` checked entry by entry."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from typing import Any

from ...codec import ATTR_EVENT_ID, ATTR_EVENT_NAME
from ...concurrency import BlockingExecutor
from ...delivery import DELIVERED, EntryResult, OutboundMessage, Outcome
from ._fields import MAX_ATTRIBUTES

SQS_MAX_BATCH_COUNT = 10
SQS_MAX_BYTES = 256 * 1024  # per message and per batch: body + attribute names, types and values
_STRING = "String"

#: ``f(message) -> str``: FIFO message group id / deduplication id of a message.
MessageIdFunction = Callable[[OutboundMessage], str]


def default_message_group_id(message: OutboundMessage) -> str:
    # Ordering is guaranteed within a group: one group per key, else per event name, keeps events of a kind in
    # order without serialising the whole queue.
    return message.key or message.event_name


def default_deduplication_id(message: OutboundMessage) -> str:
    # The stable event id: a retry of the same event within SQS's 5-minute window is not delivered twice.
    return message.id


class SQSTransport:
    """:class:`~fastapi_events.delivery.Transport` for one SQS queue (standard or FIFO).

    ``queue`` is a queue URL or a queue name (resolved with ``GetQueueUrl`` at :meth:`open`). All boto3 calls
    run in one dedicated thread, so the event loop never waits on an HTTP round trip, and the boto3 client -
    created in that thread - is only ever used from it.
    """

    system = "aws_sqs"

    def __init__(
        self,
        queue: str,
        region_name: str | None = None,
        *,
        message_group_id: MessageIdFunction | None = None,
        deduplication_id: MessageIdFunction | None = None,
        max_batch_count: int = SQS_MAX_BATCH_COUNT,
        max_batch_bytes: int = SQS_MAX_BYTES,
        max_message_bytes: int = SQS_MAX_BYTES,
        **boto_client_kwargs: Any,
    ) -> None:
        if not 1 <= max_batch_count <= SQS_MAX_BATCH_COUNT:
            raise ValueError(f"max_batch_count must be between 1 and {SQS_MAX_BATCH_COUNT}")
        self.destination = queue
        self.queue_url: str | None = queue if "://" in queue else None
        self.region_name = region_name
        self.fifo = queue.endswith(".fifo")
        self.message_group_id = message_group_id or default_message_group_id
        self.deduplication_id = deduplication_id or default_deduplication_id
        self.max_batch_count = max_batch_count
        self.max_batch_bytes = min(max_batch_bytes, SQS_MAX_BYTES)
        self.max_message_bytes = min(max_message_bytes, self.max_batch_bytes)
        self.boto_client_kwargs = boto_client_kwargs
        self._threads = BlockingExecutor("sqs-transport")
        self._client: Any = None

    def message_size(self, message: OutboundMessage) -> int:
        return len(message.body) + sum(
            len(name.encode()) + len(_STRING) + len(value.encode()) for name, value in message.attributes.items()
        )

    async def open(self) -> None:
        await self._threads.run(self._open_sync)

    def _open_sync(self) -> None:
        if self._client is None:
            self._client = _make_client(self.region_name, self.boto_client_kwargs)
        if self.queue_url is None:
            self.queue_url = self._client.get_queue_url(QueueName=self.destination)["QueueUrl"]

    async def send_batch(self, batch: Sequence[OutboundMessage]) -> Sequence[EntryResult]:
        entries: list[dict[str, Any]] = []
        results: list[EntryResult | None] = [None] * len(batch)
        for index, message in enumerate(batch):
            try:
                entries.append(self._entry(str(index), message))
            except Exception as exc:  # a bad body or a failing user callable rejects this entry only
                results[index] = EntryResult(Outcome.PERMANENT, f"{type(exc).__name__}: {exc}")
        if entries:
            response = await self._threads.run(self._send_sync, entries)
            for ok in response.get("Successful", ()):
                results[int(ok["Id"])] = DELIVERED
            for failed in response.get("Failed", ()):
                # SenderFault: the request is wrong for this entry and will stay wrong; otherwise SQS had a
                # problem.
                outcome = Outcome.PERMANENT if failed.get("SenderFault") else Outcome.RETRY
                reason = f"{failed.get('Code', '?')}: {failed.get('Message', '')}".rstrip(": ")
                results[int(failed["Id"])] = EntryResult(outcome, reason)
        # An entry SQS did not mention at all was not accepted: try it again.
        return [r or EntryResult(Outcome.RETRY, "missing from the SendMessageBatch response") for r in results]

    def _entry(self, entry_id: str, message: OutboundMessage) -> dict[str, Any]:
        entry: dict[str, Any] = {
            # Batch-local ids: user ids may contain characters SQS does not allow here.
            "Id": entry_id,
            "MessageBody": message.body.decode("utf-8"),
            "MessageAttributes": _message_attributes(message.attributes),
        }
        if self.fifo:
            entry["MessageGroupId"] = self.message_group_id(message)
            entry["MessageDeduplicationId"] = self.deduplication_id(message)
        return entry

    def _send_sync(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        self._open_sync()  # after a failed open (broker down at startup), the first send resolves the queue
        try:
            response: dict[str, Any] = self._client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except Exception as exc:
            code = _content_error(exc)
            if code is None:
                raise  # unreachable, throttled, queue missing...: the whole batch is retried
            if len(entries) == 1:
                failed = {"Id": entries[0]["Id"], "SenderFault": True, "Code": code, "Message": str(exc)}
                return {"Successful": [], "Failed": [failed]}
            # SQS rejected the request for the content of some entry (e.g. over the queue's
            # MaximumMessageSize): send them one by one so that only the offending event fails.
            merged: dict[str, Any] = {"Successful": [], "Failed": []}
            for entry in entries:
                single = self._send_sync([entry])
                merged["Successful"] += single.get("Successful", [])
                merged["Failed"] += single.get("Failed", [])
            return merged
        return response

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            # Closing is best effort: the process may be shutting down anyway.
            with contextlib.suppress(Exception):
                await self._threads.run(client.close)
        self._threads.shutdown()

    def __repr__(self) -> str:
        return f"SQSTransport({self.destination!r})"


_ATTRIBUTE_NAME = re.compile(r"^(?!aws\.|amazon\.)[A-Za-z0-9_-][A-Za-z0-9_.-]{0,255}$", re.IGNORECASE)
_FIRST = (ATTR_EVENT_NAME, ATTR_EVENT_ID)


def _message_attributes(attributes: dict[str, str]) -> dict[str, dict[str, str]]:
    # SQS allows 10 attributes with restricted names: event name and id always go first, then whatever trace
    # propagation keys fit; a name SQS would reject is dropped rather than failing the message.
    names = [n for n in _FIRST if n in attributes] + [n for n in attributes if n not in _FIRST]
    valid = [n for n in names if attributes[n] and _ATTRIBUTE_NAME.match(n) and ".." not in n and not n.endswith(".")]
    return {n: {"DataType": _STRING, "StringValue": attributes[n]} for n in valid[:MAX_ATTRIBUTES]}


# Whole-request errors caused by what a message contains: retrying the same content can never succeed.
_CONTENT_ERRORS = frozenset(
    {
        "InvalidParameterValue",
        "InvalidMessageContents",
        "InvalidAttributeName",
        "InvalidAttributeValue",
        "MessageTooLong",
        "BatchRequestTooLong",
        "AWS.SimpleQueueService.BatchRequestTooLong",
        "AWS.SimpleQueueService.InvalidBatchEntryId",
    }
)


def _content_error(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return code if isinstance(code, str) and code in _CONTENT_ERRORS else None


def _make_client(region_name: str | None, kwargs: dict[str, Any]) -> Any:
    import boto3
    from botocore.config import Config

    # Our delivery layer retries with backoff and a durable spool; boto3's own retries would only hold the
    # worker thread for a minute per call while the broker is down.
    ours = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30)
    options = dict(kwargs)
    user_config = options.pop("config", None)
    config = ours.merge(user_config) if user_config is not None else ours
    return boto3.session.Session().client("sqs", region_name=region_name, config=config, **options)


__all__ = ["SQS_MAX_BATCH_COUNT", "SQS_MAX_BYTES", "MessageIdFunction", "SQSTransport"]
