"""HTTPS through the SSRF guard: the connection goes to the checked IP address, while TLS verifies the
certificate for the URL's host name (and sends it as SNI) and the Host header names it too.

The guard refuses loopback, and these tests must not leave loopback, so they widen the guard's policy to loopback
addresses only (everything else stays refused) - the connect path is the guarded one."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from fastapi_events import RetryPolicy
from fastapi_events.webhooks import WebhookEndpoint, WebhookForwardHandler, _ssrf, _transport
from tests.webhooks._endpoint import SECRET, Recorder, ThreadServer
from tests.webhooks._send import DeadLetters, events, send

pytestmark = pytest.mark.servers  # real uvicorn endpoints on loopback

Serve = Callable[..., ThreadServer]


@pytest.fixture
def ca(monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    """A test CA the forwarder trusts; the guard lets 127.0.0.1 through (and records what it checked)."""
    authority = trustme.CA()

    def trusting() -> ssl.SSLContext:
        context = ssl.create_default_context()
        authority.configure_trust(context)
        return context

    checked: list[str] = []
    strict = _ssrf.refusal

    def loopback_allowed(address: _ssrf.IPAddress) -> str | None:
        checked.append(str(address))
        return None if address.is_loopback else strict(address)

    monkeypatch.setattr(_transport, "ssl_context", trusting)
    monkeypatch.setattr(_ssrf, "refusal", loopback_allowed)
    authority.checked = checked  # type: ignore[attr-defined]
    return authority


def https_endpoint(serve: Serve, ca: trustme.CA, tmp_path: Path, name: str) -> tuple[Recorder, int]:
    cert = ca.issue_cert(name)  # a DNS name only: a handshake verified against 127.0.0.1 would fail
    certfile, keyfile = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    recorder = Recorder()
    server = serve(recorder, ssl_certfile=str(certfile), ssl_keyfile=str(keyfile))
    return recorder, server.port


@pytest.mark.anyio
async def test_https_by_host_name_connects_to_the_checked_address(serve: Serve, ca: trustme.CA, tmp_path: Path) -> None:
    recorder, port = https_endpoint(serve, ca, tmp_path, "localhost")
    url = f"https://localhost:{port}/hook"  # resolved by the guard, connected to by address
    dead = DeadLetters()
    forwarder = WebhookForwardHandler([WebhookEndpoint(url, SECRET)], on_dead_letter=dead, timeout=10)
    await send(forwarder, events("order.placed", 2))

    assert dead.items == []
    assert len(recorder.deliveries) == 2
    assert {d.headers["host"] for d in recorder.deliveries} == {f"localhost:{port}"}
    assert "127.0.0.1" in ca.checked  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_a_certificate_for_another_name_is_refused(serve: Serve, ca: trustme.CA, tmp_path: Path) -> None:
    recorder, port = https_endpoint(serve, ca, tmp_path, "someone-else.example")
    dead = DeadLetters()
    forwarder = WebhookForwardHandler(
        [WebhookEndpoint(f"https://localhost:{port}/hook", SECRET)],
        on_dead_letter=dead,
        retry=RetryPolicy(max_attempts=1),
        timeout=10,
    )
    await send(forwarder, events("order.placed", 1))
    assert recorder.deliveries == []
    [reason] = dead.reasons()
    assert "certificate" in reason.lower() or "hostname" in reason.lower(), reason
