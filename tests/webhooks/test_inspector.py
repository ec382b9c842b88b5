"""The inspector lists webhook endpoints (state and counts) and their dead letters, and replays them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fastapi_events import RetryPolicy, dispatch
from fastapi_events.inspector import Inspector
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.webhooks import WebhookEndpoint, WebhookForwardHandler
from tests._servers import wait_for
from tests.inspector.conftest import page_token
from tests.webhooks._endpoint import SECRET, Recorder, Reply

pytestmark = [pytest.mark.servers, pytest.mark.fastapi]


def test_endpoints_are_listed_with_state_and_counts_and_their_dead_letters_replayed(
    tmp_path: Path, endpoint: Callable[..., tuple[Recorder, str]]
) -> None:
    gone, gone_url = endpoint(default=Reply(410))
    picky, picky_url = endpoint(script=[Reply(422)])
    healthy, healthy_url = endpoint()
    forwarder = WebhookForwardHandler(
        [WebhookEndpoint(u, SECRET) for u in (gone_url, picky_url, healthy_url)],
        allow_private_networks=True,
        spool_path=tmp_path / "webhooks.db",
        relay_interval=0.2,
        retry=RetryPolicy(max_attempts=2, initial_delay=0.05, max_delay=0.1),
    )
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[forwarder])
    inspector = Inspector(authorize=lambda connection: True)  # TestClient's peer is not a loopback address
    app.mount("/_events", inspector.app)

    @app.post("/emit")
    async def emit() -> dict[str, str]:
        dispatch("order.placed", {"id": 1})
        return {}

    with TestClient(app) as client:
        try:
            check(client, forwarder, gone_url, picky_url, healthy_url, picky)
        finally:
            inspector.recorder.close()  # watching installs process-wide hooks
    assert len(gone.deliveries) == 1
    assert len(healthy.deliveries) == 1


def check(
    client: TestClient,
    forwarder: WebhookForwardHandler,
    gone_url: str,
    picky_url: str,
    healthy_url: str,
    picky: Recorder,
) -> None:
    client.post("/emit")
    wait_for(lambda: forwarder.stats.delivered == 1 and forwarder.stats.dead_lettered == 2, 30)
    webhooks = {w["url"]: w for w in client.get("/_events/api/handlers").json()["webhooks"]}
    assert webhooks[gone_url]["state"] == "disabled"
    assert "410" in webhooks[gone_url]["disabled_reason"]
    assert (webhooks[gone_url]["dead_lettered"], webhooks[gone_url]["delivered"]) == (1, 0)
    assert (webhooks[picky_url]["state"], webhooks[picky_url]["dead_lettered"]) == ("active", 1)
    assert (webhooks[healthy_url]["state"], webhooks[healthy_url]["delivered"]) == ("active", 1)

    sources: list[Any] = client.get("/_events/api/dead-letters").json()["sources"]
    by_url = {s["label"].rsplit(" ", 1)[-1]: s for s in sources if s["kind"] == "spool"}
    assert by_url[gone_url]["total"] == 1
    assert "410" in by_url[gone_url]["items"][0]["reason"]
    assert "422" in by_url[picky_url]["items"][0]["reason"]

    # The picky endpoint accepts now: replaying its dead letter delivers it.
    headers = {"x-inspector-token": page_token(client.get("/_events/").text), "origin": "http://testserver"}
    source = by_url[picky_url]
    replay = {"source": source["id"], "ids": [source["items"][0]["id"]]}
    assert client.post("/_events/api/dead-letters/replay", json=replay, headers=headers).json()["replayed"] == 1
    wait_for(lambda: len(picky.deliveries) == 2, 30)
    wait_for(lambda: forwarder.stats.delivered == 2, 30)
