"""``WebhookForwardHandler.add(endpoint)``: a customer subscribes while the app runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from fastapi_events import RetryPolicy
from fastapi_events.errors import ConfigurationError
from fastapi_events.webhooks import WebhookEndpoint, WebhookForwardHandler
from tests._servers import free_port
from tests.webhooks._endpoint import SECRET, Recorder, ThreadServer
from tests.webhooks._send import events, wait_until

pytestmark = pytest.mark.servers  # real uvicorn endpoints on loopback


def numbers(recorder: Recorder) -> list[int]:
    return sorted(json.loads(d.body)["data"]["n"] for d in recorder.deliveries)


@pytest.mark.anyio
async def test_an_endpoint_added_while_running_gets_the_events_handed_over_after(
    endpoint: Callable[..., tuple[Recorder, str]],
) -> None:
    first, first_url = endpoint()
    added, added_url = endpoint()
    forwarder = WebhookForwardHandler([WebhookEndpoint(first_url, SECRET)], allow_private_networks=True)
    await forwarder.startup()
    try:
        await forwarder.handle_many(events("order.placed", 2))
        await forwarder.add(WebhookEndpoint(added_url, SECRET, events=("order.*",)))
        with pytest.raises(ConfigurationError, match="once"):
            await forwarder.add(WebhookEndpoint(added_url, SECRET))
        await forwarder.handle_many([("order.paid", {"n": 2}), ("user.created", {"n": 3})])
        await forwarder.flush(30)
        states = {state["url"]: state for state in forwarder.endpoint_states()}
    finally:
        await forwarder.shutdown(5)
    assert numbers(first) == [0, 1, 2, 3]
    assert numbers(added) == [2]  # only what came after, and only what it subscribed to
    assert states[added_url]["delivered"] == 1
    assert [e.url for e in forwarder.endpoints] == [first_url, added_url]


@pytest.mark.anyio
async def test_an_added_endpoint_gets_what_an_earlier_process_spooled_for_it(
    tmp_path: Path, serve: Callable[..., ThreadServer]
) -> None:
    port = free_port()  # nothing listens yet: the customer's endpoint is down
    url = f"http://127.0.0.1:{port}/hook"
    spool = tmp_path / "webhooks.db"
    options = {
        "spool_path": spool,
        "relay_interval": 0.2,
        "retry": RetryPolicy(max_attempts=None, initial_delay=0.1, max_delay=0.3),
    }
    earlier = WebhookForwardHandler([WebhookEndpoint(url, SECRET)], allow_private_networks=True, **options)
    await earlier.startup()
    await earlier.handle_many(events("order.placed", 4))
    await earlier.shutdown(0.5)  # stops with the 4 events still in the spool

    recorder = Recorder()
    serve(recorder, port)  # the endpoint is back
    later = WebhookForwardHandler([], allow_private_networks=True, **options)
    await later.startup()
    try:
        await later.add(WebhookEndpoint(url, SECRET))
        await wait_until(lambda: len(recorder.deliveries) >= 4, 60)
    finally:
        await later.shutdown(5)
    assert numbers(recorder) == [0, 1, 2, 3]
