"""Rotating a secret without losing a delivery: an endpoint given several secrets signs each POST with every one
of them (space-separated ``v1,`` signatures), and a receiver given several secrets accepts a delivery signed with
any of them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from standardwebhooks import Webhook

from fastapi_events import RetryPolicy
from fastapi_events.errors import ConfigurationError
from fastapi_events.webhooks import WebhookEndpoint, WebhookForwardHandler, WebhookReceiver, new_webhook_secret
from tests.webhooks._endpoint import Recorder, ThreadServer, receiving_app
from tests.webhooks._send import DeadLetters, send, wait_until

pytestmark = pytest.mark.servers  # real uvicorn endpoints on loopback

OLD, NEW, OTHER = new_webhook_secret(), new_webhook_secret(), new_webhook_secret()


@pytest.mark.anyio
async def test_an_endpoint_with_two_secrets_is_verified_with_either(
    endpoint: Callable[..., tuple[Recorder, str]],
) -> None:
    recorder, url = endpoint()
    forwarder = WebhookForwardHandler([WebhookEndpoint(url, [OLD, NEW])], allow_private_networks=True)
    await send(forwarder, [("order.placed", {"id": 1})])

    [delivery] = recorder.deliveries
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2
    # The reference library, holding either secret, accepts it; holding another, refuses it.
    for secret in (OLD, NEW):
        assert Webhook(secret).verify(delivery.body, delivery.headers)["data"] == {"id": 1}
    with pytest.raises(Exception, match=r"(?i)signature"):
        Webhook(OTHER).verify(delivery.body, delivery.headers)


@pytest.mark.anyio
async def test_a_receiver_with_two_secrets_accepts_senders_of_either(serve: Callable[..., ThreadServer]) -> None:
    app, received = receiving_app(WebhookReceiver(secret=[OLD, NEW]))
    url = serve(app).url + "/webhooks"
    dead = DeadLetters()
    for n, secret in enumerate([OLD, NEW, [NEW, OLD], OTHER]):
        forwarder = WebhookForwardHandler(
            [WebhookEndpoint(url, secret)],
            allow_private_networks=True,
            retry=RetryPolicy(max_attempts=1),
            on_dead_letter=dead,
        )
        await send(forwarder, [("order.placed", {"sender": n})])
    await wait_until(lambda: len(received) >= 3, 30)
    await asyncio.sleep(0.3)
    assert sorted(data["sender"] for _, data in received) == [0, 1, 2]
    [(_, _, reason)] = dead.items  # signed with a secret the receiver does not hold: 401, dead-lettered
    assert "401" in reason


def test_secrets_are_checked_when_the_endpoint_is_built() -> None:
    with pytest.raises(ConfigurationError, match="needs a secret"):
        WebhookEndpoint("https://hooks.example.com/in", [])
    with pytest.raises(ConfigurationError, match="whsec_"):
        WebhookEndpoint("https://hooks.example.com/in", [NEW, "not-a-secret"])
    assert repr(WebhookEndpoint("https://hooks.example.com/in", [OLD, NEW])).count("whsec_") == 0
