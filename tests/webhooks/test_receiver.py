"""``WebhookReceiver`` under uvicorn: what it answers, and what it dispatches into the receiving app."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from fastapi_events.errors import ConfigurationError
from fastapi_events.webhooks import WebhookReceiver
from tests._servers import wait_for
from tests.webhooks._endpoint import SECRET, ThreadServer, receiving_app

pytestmark = pytest.mark.servers  # real uvicorn endpoints on loopback

WRONG_SECRET = "whsec_" + base64.b64encode(b"x" * 32).decode()


def signed(body: bytes, message_id: str = "msg_1", secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    stamp = int(time.time() if at is None else at)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        "content-type": "application/json",
    }


@dataclass
class Receiving:
    url: str
    received: list[tuple[str, Any]]
    client: httpx.Client

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.client.post(self.url + path, content=body, headers=headers)


@pytest.fixture
def receiving(serve: Callable[..., ThreadServer]) -> Iterator[Receiving]:
    app, received = receiving_app(WebhookReceiver(secret=SECRET, tolerance=300))
    server = serve(app)
    with httpx.Client(timeout=30, follow_redirects=False) as client:
        yield Receiving(server.url, received, client)


BODY = json.dumps({"type": "order.placed", "timestamp": "2026-01-01T00:00:00Z", "data": {"id": 1}}).encode()


@pytest.mark.parametrize("path", ["/webhooks", "/webhooks/"])
def test_a_valid_delivery_is_answered_204_and_dispatched(receiving: Receiving, path: str) -> None:
    reply = receiving.post(path, BODY, signed(BODY))
    assert reply.status_code == 204, reply.text
    wait_for(lambda: receiving.received, 30)
    assert receiving.received == [("order.placed", {"id": 1})]


def test_a_redelivery_of_the_same_id_is_not_dispatched_again(receiving: Receiving) -> None:
    assert receiving.post("/webhooks", BODY, signed(BODY, "msg_dup")).status_code == 204
    assert receiving.post("/webhooks", BODY, signed(BODY, "msg_dup", at=time.time() + 1)).status_code == 204
    assert receiving.post("/webhooks", BODY, signed(BODY, "msg_other")).status_code == 204
    wait_for(lambda: len(receiving.received) >= 2, 30)
    time.sleep(0.5)
    assert len(receiving.received) == 2


def test_any_of_several_signatures_may_match(receiving: Receiving) -> None:
    headers = signed(BODY)
    wrong = signed(BODY, secret=WRONG_SECRET)["webhook-signature"]
    headers["webhook-signature"] = f"{wrong} v2,ignored {headers['webhook-signature']}"
    assert receiving.post("/webhooks", BODY, headers).status_code == 204


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h: h.pop("webhook-signature"), id="missing signature"),
        pytest.param(lambda h: h.pop("webhook-id"), id="missing id"),
        pytest.param(lambda h: h.update({"webhook-signature": "v1,AAAA"}), id="bad signature"),
        pytest.param(lambda h: h.update(signed(BODY, secret=WRONG_SECRET)), id="wrong secret"),
        pytest.param(lambda h: h.update(signed(BODY, at=time.time() - 301 - 5)), id="stale timestamp"),
        pytest.param(lambda h: h.update(signed(BODY, at=time.time() + 400)), id="future timestamp"),
        pytest.param(lambda h: h.update({"webhook-id": "msg_other"}), id="id not signed"),
    ],
)
def test_an_unauthenticated_delivery_is_401_and_not_dispatched(
    receiving: Receiving, tamper: Callable[[dict[str, str]], object]
) -> None:
    headers = signed(BODY)
    tamper(headers)
    assert receiving.post("/webhooks", BODY, headers).status_code == 401
    time.sleep(0.3)
    assert receiving.received == []


@pytest.mark.parametrize(
    "body", [b"not json", b"[1, 2]", b'{"data": {}}', b'{"type": "x"}', b'{"type": 3, "data": {}}', b"\xff\xfe"]
)
def test_a_malformed_body_is_400(receiving: Receiving, body: bytes) -> None:
    assert receiving.post("/webhooks/", body, signed(body)).status_code == 400
    assert receiving.received == []


def test_a_body_over_the_limit_is_413_and_not_dispatched(receiving: Receiving) -> None:
    body = json.dumps({"type": "order.placed", "data": "x" * (1024 * 1024)}).encode()  # just over 1 MiB
    assert receiving.post("/webhooks", body, signed(body)).status_code == 413
    time.sleep(0.3)
    assert receiving.received == []


def test_other_methods_and_paths(receiving: Receiving) -> None:
    assert receiving.client.get(receiving.url + "/webhooks").status_code == 405
    assert receiving.post("/webhooks/elsewhere", BODY, signed(BODY)).status_code == 404


def test_the_secret_is_checked_when_the_receiver_is_built() -> None:
    with pytest.raises(ConfigurationError, match="whsec_"):
        WebhookReceiver(secret="not-a-secret")
    with pytest.raises(ConfigurationError, match="24-64 bytes"):
        WebhookReceiver(secret="whsec_" + base64.b64encode(b"short").decode())


@pytest.mark.parametrize("lifespan", [True, False])
def test_the_bare_mount_path_is_served_without_a_redirect_with_or_without_lifespan(lifespan: bool) -> None:
    from starlette.testclient import TestClient

    app, received = receiving_app(WebhookReceiver(secret=SECRET), "/hooks/in")
    client = TestClient(app, follow_redirects=False)
    if lifespan:
        with client:
            reply = client.post("/hooks/in", content=BODY, headers=signed(BODY))
    else:  # no lifespan (TestClient outside ``with``): the first request sets the route up
        reply = client.post("/hooks/in", content=BODY, headers=signed(BODY))
    assert reply.status_code == 204, reply.headers
    assert received == [("order.placed", {"id": 1})]
    assert client.post("/hooks/in/", content=BODY, headers=signed(BODY, "msg_2")).status_code == 204


def test_types_outside_the_receivers_events_are_answered_204_and_not_dispatched() -> None:
    from starlette.testclient import TestClient

    app, received = receiving_app(WebhookReceiver(secret=SECRET, events=("order.*", "invoice.paid")))
    bodies = [
        json.dumps({"type": name, "timestamp": "2026-01-01T00:00:00Z", "data": {"n": n}}).encode()
        for n, name in enumerate(["order.placed", "user.deleted", "invoice.paid", "invoice.voided"])
    ]
    with TestClient(app) as client:
        for n, body in enumerate(bodies):
            # 204 for every one: the sender is not to retry (nor dead-letter) what this app does not take.
            assert client.post("/webhooks", content=body, headers=signed(body, f"msg_{n}")).status_code == 204
    assert received == [("order.placed", {"n": 0}), ("invoice.paid", {"n": 2})]
    with pytest.raises(ConfigurationError, match="fnmatch patterns"):
        WebhookReceiver(secret=SECRET, events="order.*")  # a lone string would match by its characters
