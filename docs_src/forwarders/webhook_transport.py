from collections.abc import Sequence

import httpx

from fastapi_events.delivery import DELIVERED, EntryResult, ForwardHandler, OutboundMessage, Outcome


class WebhookTransport:
    system = "webhook"
    max_batch_count = 100
    max_batch_bytes = max_message_bytes = 1_000_000

    def __init__(self, url: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.destination = url  # names the spool's rows: keep it stable across restarts
        self._transport = transport

    def message_size(self, message: OutboundMessage) -> int:
        return len(message.body)

    async def open(self) -> None:
        self.client = httpx.AsyncClient(timeout=10, transport=self._transport)

    async def send_batch(self, batch: Sequence[OutboundMessage]) -> list[EntryResult]:
        body = b"[" + b",".join(message.body for message in batch) + b"]"
        response = await self.client.post(self.destination, content=body)  # a raised error = an outage
        if response.status_code >= 500:
            return [EntryResult(Outcome.RETRY, f"HTTP {response.status_code}")] * len(batch)
        if response.is_error:
            return [EntryResult(Outcome.PERMANENT, f"HTTP {response.status_code}")] * len(batch)
        return [DELIVERED] * len(batch)

    async def close(self) -> None:
        await self.client.aclose()


def webhook_forwarder(url: str, spool_path: str | None = None) -> ForwardHandler:
    return ForwardHandler(WebhookTransport(url), spool_path=spool_path)
