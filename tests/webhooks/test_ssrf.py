"""The SSRF guard. No test here sends a packet anywhere but loopback: loopback targets are checked against a real
endpoint that must record nothing; every other kind of address is tried from a subprocess in a network namespace
of its own (``unshare -n``), which has no interface that could carry a packet anywhere."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fastapi_events import RetryPolicy
from fastapi_events.webhooks import WebhookEndpoint, WebhookForwardHandler
from tests.webhooks._endpoint import SECRET, Recorder
from tests.webhooks._send import DeadLetters, events, send

pytestmark = pytest.mark.servers  # real uvicorn endpoints on loopback, subprocesses in network namespaces

ROOT = Path(__file__).resolve().parents[2]
QUICK = RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.1)


@pytest.mark.anyio
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.0.0.2"])
async def test_loopback_is_refused_and_nothing_arrives(
    endpoint: Callable[..., tuple[Recorder, str]], host: str
) -> None:
    recorder, url = endpoint()
    guarded_url = url.replace("127.0.0.1", host)
    dead = DeadLetters()
    forwarder = WebhookForwardHandler([WebhookEndpoint(guarded_url, SECRET)], retry=QUICK, on_dead_letter=dead)
    await send(forwarder, events("order.placed", 3))

    assert recorder.deliveries == []
    assert len(dead.items) == 3
    for reason in dead.reasons():
        assert "private" in reason, reason
        assert "loopback" in reason, reason
    # The same endpoint, allowed: it was reachable all along.
    allowed = WebhookForwardHandler([WebhookEndpoint(url, SECRET)], allow_private_networks=True)
    await send(allowed, events("order.placed", 1))
    assert len(recorder.deliveries) == 1


@pytest.mark.anyio
async def test_ipv6_loopback_is_refused(endpoint: Callable[..., tuple[Recorder, str]]) -> None:
    recorder, url = endpoint()
    port = url.rsplit(":", 1)[1].split("/")[0]
    dead = DeadLetters()
    forwarder = WebhookForwardHandler(
        [
            WebhookEndpoint(f"http://[::1]:{port}/hook", SECRET),
            WebhookEndpoint(f"http://[::ffff:127.0.0.1]:{port}/hook", SECRET),
        ],
        retry=QUICK,
        on_dead_letter=dead,
    )
    await send(forwarder, events("order.placed", 1))
    assert recorder.deliveries == []
    assert len(dead.items) == 2
    assert all("private" in r and "loopback" in r for r in dead.reasons())


NON_PUBLIC = [
    "http://10.1.2.3/hook",
    "http://172.16.5.4/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0:8080/hook",
    "http://224.0.0.1/hook",
    "http://100.64.0.1/hook",
    "http://[fc00::1]/hook",
    "http://[fe80::1]/hook",
    "http://[::]/hook",
    "http://[ff02::1]/hook",
    "https://10.0.0.1/hook",
]

# Runs inside the empty network namespace: sends one event to each URL, prints the dead-letter reasons as JSON.
_PROBE = """
import asyncio, json, sys
from fastapi_events import RetryPolicy
from fastapi_events.webhooks import WebhookEndpoint, WebhookForwardHandler

reasons = {}
def dead(message, reason):
    reasons[message.event_name] = reason

async def main():
    urls = json.loads(sys.argv[1])
    eps = [WebhookEndpoint(url, sys.argv[2], events=(str(i),)) for i, url in enumerate(urls)]
    fwd = WebhookForwardHandler(eps, retry=RetryPolicy(max_attempts=1), on_dead_letter=dead, timeout=5)
    await fwd.startup()
    await fwd.handle_many([(str(i), {}) for i in range(len(urls))])
    await fwd.flush(60)
    await fwd.shutdown(5)
    print(json.dumps({urls[int(k)]: v for k, v in reasons.items()}))

asyncio.run(main())
"""


def test_private_link_local_and_other_non_public_addresses_are_refused_before_connecting(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    assert unshare, "util-linux unshare is needed (apt-get install util-linux)"
    # Check first that the namespace really is empty: nothing can be reached from inside, not even loopback.
    isolation = subprocess.run(
        [unshare, "-n", sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', 9), 2)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert isolation.returncode != 0
    assert "unreachable" in isolation.stderr.lower(), isolation.stderr

    probe = subprocess.run(
        [unshare, "-n", sys.executable, "-c", _PROBE, json.dumps(NON_PUBLIC), SECRET],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert probe.returncode == 0, probe.stderr
    reasons = json.loads(probe.stdout.strip().splitlines()[-1])
    assert sorted(reasons) == sorted(NON_PUBLIC)
    for url, reason in reasons.items():
        # Refused by the guard, not a connection that failed: the namespace would make any attempt fail.
        assert "private" in reason, (url, reason)
        assert "refused to connect" in reason, (url, reason)
        assert "ConnectError" not in reason, (url, reason)
        assert "unreachable" not in reason.lower(), (url, reason)
