"""docs/webhooks.md's example, app to app: the sending app's event reaches the receiving app's handler over
real HTTP (both apps under uvicorn on loopback)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests._servers import free_port, wait_for
from tests.webhooks._endpoint import SECRET, ThreadServer

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
