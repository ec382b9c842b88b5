"""What the sender does with each kind of answer: delivered, retried (honouring Retry-After), disabled, dead."""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable

import pytest
from standardwebhooks import Webhook

from fastapi_events import RetryPolicy
from fastapi_events.webhooks import WebhookEndpoint, WebhookForwardHandler
from tests.webhooks._endpoint import SECRET, Recorder, Reply
from tests.webhooks._send import DeadLetters, events, hand_over, send

pytestmark = pytest.mark.servers  # real uvicorn endpoints on loopback

Endpoint = Callable[..., tuple[Recorder, str]]
QUICK = RetryPolicy(max_attempts=5, initial_delay=0.05, max_delay=0.2)


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "form"), [(503, "seconds"), (429, "seconds"), (408, "seconds"), (503, "date")])
async def test_a_transient_answer_is_retried_after_the_retry_after_seconds(
    endpoint: Endpoint, status: int, form: str
) -> None:
    wait = "2" if form == "seconds" else email.utils.formatdate(time.time() + 6, usegmt=True)
    recorder, url = endpoint(script=[Reply(status, {"retry-after": wait})])
    dead = DeadLetters()
    forwarder = WebhookForwardHandler(
        [WebhookEndpoint(url, SECRET)], allow_private_networks=True, retry=QUICK, on_dead_letter=dead
    )
    await send(forwarder, [("order.placed", {"id": 1})])

    first, second = recorder.deliveries
    assert dead.items == []
    # The backoff alone would have retried within 0.05 s; the endpoint asked for 2 s, or a date seconds ahead.
    if form == "seconds":
        assert second.at - first.at >= 1.9
    else:  # not before the date the endpoint named (whole seconds, so up to a second less than the 6 s above)
        assert second.at >= email.utils.parsedate_to_datetime(wait).timestamp() - 0.05
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    # Each attempt is stamped and signed anew: the second one's signature is valid with its own later timestamp.
    assert int(second.headers["webhook-timestamp"]) >= int(first.headers["webhook-timestamp"]) + 1
    for delivery in (first, second):
        assert Webhook(SECRET).verify(delivery.body, delivery.headers)["data"] == {"id": 1}
    assert forwarder.stats.delivered == 1
    assert forwarder.stats.retried == 1


@pytest.mark.anyio
async def test_a_timeout_and_a_server_error_are_retried_until_delivered(endpoint: Endpoint) -> None:
    recorder, url = endpoint(script=[Reply(500), Reply(204, delay=3.0), Reply(204)])
    forwarder = WebhookForwardHandler(
        [WebhookEndpoint(url, SECRET)], allow_private_networks=True, retry=QUICK, timeout=1.0
    )
    await send(forwarder, [("order.placed", {"id": 1})])
    assert len(recorder.deliveries) == 3
    assert len(set(recorder.ids())) == 1
    assert forwarder.stats.delivered == 1
    assert forwarder.stats.dead_lettered == 0


@pytest.mark.anyio
async def test_410_disables_that_endpoint_only(endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    gone, gone_url = endpoint(default=Reply(410))
    healthy, healthy_url = endpoint()
    dead = DeadLetters()
    forwarder = WebhookForwardHandler(
        [WebhookEndpoint(gone_url, SECRET), WebhookEndpoint(healthy_url, SECRET)],
        allow_private_networks=True,
        retry=QUICK,
        on_dead_letter=dead,
    )
    caplog.set_level(logging.ERROR, logger="fastapi_events")
    await forwarder.startup()
    try:
        await hand_over(forwarder, events("order.placed", 1))
        await hand_over(forwarder, events("order.shipped", 5))
        states = {state["url"]: state for state in forwarder.endpoint_states()}
    finally:
        await forwarder.shutdown(5)

    assert len(gone.deliveries) == 1  # nothing more is sent after the 410
    assert len(healthy.deliveries) == 6
    assert len(dead.items) == 6
    assert all("410" in reason and gone_url in reason for reason in dead.reasons())  # which endpoint, too
    assert any(
        "410" in r.getMessage() and r.levelno == logging.ERROR and gone_url in r.getMessage() for r in caplog.records
    )
    assert states[gone_url]["state"] == "disabled"
    assert states[gone_url]["dead_lettered"] == 6
    assert states[healthy_url]["state"] == "active"
    assert states[healthy_url]["delivered"] == 6


@pytest.mark.anyio
async def test_other_4xx_is_dead_lettered_after_one_attempt(endpoint: Endpoint) -> None:
    recorder, url = endpoint(default=Reply(400))
    dead = DeadLetters()
    forwarder = WebhookForwardHandler(
        [WebhookEndpoint(url, SECRET)], allow_private_networks=True, retry=QUICK, on_dead_letter=dead
    )
    await send(forwarder, events("order.placed", 2))
    assert len(recorder.deliveries) == 2
    assert len(dead.items) == 2
    assert all("400" in reason for reason in dead.reasons())


@pytest.mark.anyio
async def test_a_redirect_is_not_followed(endpoint: Endpoint) -> None:
    target, target_url = endpoint()
    redirecting, url = endpoint(default=Reply(307, {"location": target_url}))
    dead = DeadLetters()
    forwarder = WebhookForwardHandler(
        [WebhookEndpoint(url, SECRET)],
        allow_private_networks=True,
        retry=RetryPolicy(max_attempts=2, initial_delay=0.05, max_delay=0.1),
        on_dead_letter=dead,
    )
    await send(forwarder, events("order.placed", 1))
    assert len(redirecting.deliveries) == 2  # a failure, retried within the budget
    assert target.deliveries == []
    [reason] = dead.reasons()
    assert "307" in reason
    assert "not followed" in reason


@pytest.mark.anyio
async def test_only_matching_events_go_to_an_endpoint(endpoint: Endpoint) -> None:
    orders, orders_url = endpoint()
    everything, everything_url = endpoint()
    forwarder = WebhookForwardHandler(
        [WebhookEndpoint(orders_url, SECRET, events=("order.*",)), WebhookEndpoint(everything_url, SECRET)],
        allow_private_networks=True,
    )
    await send(forwarder, [("order.placed", 1), ("user.created", 2), ("order.paid", 3)])
    assert sorted(d.body for d in orders.deliveries) == sorted(
        d.body for d in everything.deliveries if b"order." in d.body
    )
    assert len(orders.deliveries) == 2
    assert len(everything.deliveries) == 3
    # One event, one id: the same webhook-id reaches every endpoint it goes to.
    assert set(orders.ids()) <= set(everything.ids())


@pytest.mark.anyio
async def test_events_of_one_key_arrive_in_order_even_when_one_is_retried(endpoint: Endpoint) -> None:
    recorder, url = endpoint(script=[Reply(503)])
    forwarder = WebhookForwardHandler(
        [WebhookEndpoint(url, SECRET)], allow_private_networks=True, retry=QUICK, key=lambda event: "customer-1"
    )
    await send(forwarder, events("order.placed", 6))
    seen = [json.loads(d.body)["data"]["n"] for d in recorder.deliveries]
    assert seen[0] == 0  # answered 503: nothing of that key went out before its retry
    assert seen[1:] == [0, 1, 2, 3, 4, 5]


@pytest.mark.anyio
async def test_an_endpoint_enabled_after_a_410_is_sent_to_again(endpoint: Endpoint) -> None:
    recorder, url = endpoint(script=[Reply(410)])  # then 204: its owner fixed it
    dead = DeadLetters()
    forwarder = WebhookForwardHandler(
        [WebhookEndpoint(url, SECRET)], allow_private_networks=True, retry=QUICK, on_dead_letter=dead
    )
    await forwarder.startup()
    try:
        await hand_over(forwarder, events("order.placed", 1))
        await hand_over(forwarder, events("order.shipped", 1))
        assert len(recorder.deliveries) == 1  # the second event was not sent
        forwarder.enable(url)
        await hand_over(forwarder, events("order.paid", 2))
        [state] = forwarder.endpoint_states()
    finally:
        await forwarder.shutdown(5)
    assert [name for name, _, _ in dead.items] == ["order.placed", "order.shipped"]
    assert len(recorder.deliveries) == 3
    assert (state["state"], state["delivered"], state["disabled_reason"]) == ("active", 2, None)


@pytest.mark.anyio
async def test_an_endpoint_disabled_by_the_application_gets_nothing_until_enabled(endpoint: Endpoint) -> None:
    removed, removed_url = endpoint()
    other, other_url = endpoint()
    dead = DeadLetters()
    forwarder = WebhookForwardHandler(
        [WebhookEndpoint(removed_url, SECRET), WebhookEndpoint(other_url, SECRET)],
        allow_private_networks=True,
        on_dead_letter=dead,
    )
    with pytest.raises(KeyError):
        forwarder.disable("https://hooks.example.com/unknown")
    forwarder.disable(removed_url, "the customer removed the subscription")
    await forwarder.startup()
    try:
        await hand_over(forwarder, events("order.placed", 3))
        states = {state["url"]: state for state in forwarder.endpoint_states()}
        forwarder.enable(removed_url)
        await hand_over(forwarder, events("order.paid", 1))
    finally:
        await forwarder.shutdown(5)
    assert states[removed_url]["state"] == "disabled"
    assert states[other_url]["state"] == "active"
    assert len(dead.items) == 3
    for reason in dead.reasons():
        assert removed_url in reason
        assert "the customer removed the subscription" in reason
    assert [json.loads(d.body)["type"] for d in removed.deliveries] == ["order.paid"]
    assert len(other.deliveries) == 4
