"""Interoperability with the ``standardwebhooks`` reference implementation, both ways."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable

import httpx
import pytest
from standardwebhooks import Webhook

from fastapi_events.webhooks import WebhookEndpoint, WebhookForwardHandler, WebhookReceiver
from tests.webhooks._endpoint import SECRET, Recorder, ThreadServer, receiving_app
from tests.webhooks._send import send

pytestmark = pytest.mark.servers  # real uvicorn endpoints on loopback


@pytest.mark.anyio
async def test_the_reference_library_verifies_what_we_send(endpoint: Callable[..., tuple[Recorder, str]]) -> None:
    recorder, url = endpoint()
    forwarder = WebhookForwardHandler([WebhookEndpoint(url, SECRET)], allow_private_networks=True)
    before = time.time()
    await send(forwarder, [("order.placed", {"id": 7, "total": "9.90"})])

    [delivery] = recorder.deliveries
    assert delivery.headers["content-type"] == "application/json"
    verified = Webhook(SECRET).verify(delivery.body, delivery.headers)
    assert verified["type"] == "order.placed"
    assert verified["data"] == {"id": 7, "total": "9.90"}
    sent_at = datetime.datetime.fromisoformat(verified["timestamp"].replace("Z", "+00:00"))
    assert sent_at.tzinfo is not None
    assert abs(sent_at.timestamp() - before) < 60
    assert abs(int(delivery.headers["webhook-timestamp"]) - before) < 60
    # Signed with another key, the same request is refused by the reference library.
    other = Webhook("whsec_" + "A" * 32)
    with pytest.raises(Exception, match=r"(?i)signature"):
        other.verify(delivery.body, delivery.headers)


def test_our_receiver_accepts_what_the_reference_library_signs(serve: Callable[..., ThreadServer]) -> None:
    app, received = receiving_app(WebhookReceiver(secret=SECRET, tolerance=300))
    server = serve(app)

    signer = Webhook(SECRET)
    body = json.dumps({"type": "invoice.paid", "timestamp": "2026-01-01T00:00:00Z", "data": {"amount": 5}})
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    headers = {
        "webhook-id": "msg_reference_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign("msg_reference_1", now, body),
        "content-type": "application/json",
    }
    reply = httpx.post(server.url + "/webhooks", content=body, headers=headers, timeout=30)
    assert reply.status_code == 204
    deadline = time.monotonic() + 30
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert received == [("invoice.paid", {"amount": 5})]
