"""docs/webhooks.md's examples: app to app, the sending app's event reaches the receiving app's handler over real
HTTP (both apps under uvicorn on loopback); an endpoint that answered 410 is left out of the next forwarder."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests._servers import free_port, wait_for
from tests.webhooks._endpoint import SECRET, Recorder, Reply, ThreadServer
from tests.webhooks._send import events, send

pytestmark = [pytest.mark.servers, pytest.mark.fastapi]


EXAMPLES = Path(__file__).resolve().parents[2] / "docs_src" / "webhooks"


def load(name: str) -> ModuleType:
    """Import ``docs_src/webhooks/<name>.py`` afresh (it reads the environment when imported)."""
    spec = importlib.util.spec_from_file_location(f"docs_webhooks_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_order_paid_in_the_sending_app_reaches_the_receiving_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve: Callable[..., ThreadServer]
) -> None:
    receiver_port = free_port()
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("WEBHOOK_URL", f"http://127.0.0.1:{receiver_port}/webhooks")  # no trailing slash
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("WEBHOOK_SPOOL", str(tmp_path / "webhooks.db"))
    receiving = load("receiver")
    sending = load("sender")
    serve(receiving.app, receiver_port)
    shop = serve(sending.app)

    for order_id in (1, 2, 3):
        reply = httpx.post(f"{shop.url}/orders/{order_id}/pay", timeout=30)
        assert reply.status_code == 200
    wait_for(lambda: len(receiving.paid_orders) >= 3, 60, message="3 orders at the receiving app")
    assert sorted(receiving.paid_orders) == [1, 2, 3]
    # The receiving app may run its handler before the sender has read the 2xx that settles the delivery.
    wait_for(lambda: sending.forwarder.stats.delivered >= 3, 30, message="3 deliveries acknowledged")
    assert sending.forwarder.stats.delivered == 3
    assert sending.forwarder.stats.dead_lettered == 0


@pytest.mark.anyio
async def test_an_endpoint_that_answered_410_is_left_out_of_the_next_forwarder(
    endpoint: Callable[..., tuple[Recorder, str]],
) -> None:
    example = load("subscriptions")
    gone, gone_url = endpoint(default=Reply(410))
    healthy, healthy_url = endpoint()
    for url in (gone_url, healthy_url):
        example.subscriptions[url] = {"secret": SECRET, "events": ("order.*",), "active": True}

    await send(example.make_forwarder(allow_private_networks=True), events("order.placed", 3))
    assert example.subscriptions[gone_url]["active"] is False
    assert example.subscriptions[healthy_url]["active"] is True
    answered_410 = len(gone.deliveries)  # the POSTs in flight when the first 410 came back

    # The next process builds its forwarder from the active subscriptions: nothing more goes to the gone endpoint.
    restarted = example.make_forwarder(allow_private_networks=True)
    assert [e.url for e in restarted.endpoints] == [healthy_url]
    await send(restarted, events("order.placed", 2))
    assert len(gone.deliveries) == answered_410
    assert len(healthy.deliveries) == 5
