"""Each endpoint has its own lane: one that hangs delays no other, and its concurrency is bounded."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fastapi_events.webhooks import WebhookEndpoint, WebhookForwardHandler
from tests.webhooks._endpoint import SECRET, Recorder, Reply
from tests.webhooks._send import events, wait_until

pytestmark = pytest.mark.servers  # real uvicorn endpoints on loopback


@pytest.mark.anyio
async def test_a_hanging_endpoint_does_not_delay_a_healthy_one(endpoint: Callable[..., tuple[Recorder, str]]) -> None:
    hanging, hanging_url = endpoint(default=Reply(204, delay=120.0))
    healthy, healthy_url = endpoint()
    forwarder = WebhookForwardHandler(
        [WebhookEndpoint(hanging_url, SECRET, max_concurrency=3), WebhookEndpoint(healthy_url, SECRET)],
        allow_private_networks=True,
        timeout=60.0,
        flush_timeout=1.0,
    )
    await forwarder.startup()
    try:
        for batch in range(5):  # five requests' worth of events, as the middleware hands them over
            await forwarder.handle_many(events(f"order.{batch}", 4))
        await wait_until(lambda: len(healthy.deliveries) >= 20, 30)
        assert len(healthy.deliveries) == 20
        # Meanwhile the hanging endpoint holds exactly its bound of requests open, and nothing was answered.
        assert hanging.in_flight == 3
        assert hanging.max_in_flight == 3
        states = {state["url"]: state for state in forwarder.endpoint_states()}
        assert states[hanging_url]["delivered"] == 0
        assert states[hanging_url]["queued"] == 20
        assert states[healthy_url]["delivered"] == 20
    finally:
        await forwarder.shutdown(1.0)
