"""Webhook events in the spool: they survive kill -9 while the endpoint is down, and the spool CLI lists and
replays webhook dead letters like any others."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from fastapi_events import RetryPolicy
from fastapi_events.webhooks import WebhookEndpoint, WebhookForwardHandler
from tests._app_process import AppProcesses, StartApp, accept_then_sigkill
from tests._servers import free_port, wait_for
from tests.webhooks._endpoint import SECRET, Recorder, Reply, ThreadServer
from tests.webhooks._send import DeadLetters, events, wait_until

pytestmark = pytest.mark.servers  # real uvicorn endpoints on loopback

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[StartApp]:
    processes = AppProcesses("tests.webhooks._app:app_from_env", tmp_path)
    yield processes.start
    processes.close()


@pytest.mark.fastapi  # the app process (tests/webhooks/_app.py) is a FastAPI app
def test_sigkill_while_the_endpoint_is_down_then_the_next_process_delivers_everything(
    tmp_path: Path, start_app: StartApp, serve: Callable[..., ThreadServer]
) -> None:
    port = free_port()  # nothing listens here yet: the customer's endpoint is down
    spool = tmp_path / "spool" / "webhooks.db"
    env = {"FE_WEBHOOK_URL": f"http://127.0.0.1:{port}/hook", "FE_SPOOL": str(spool)}
    accept_then_sigkill(start_app, env, spool, events=60)

    recorder = Recorder()
    serve(recorder, port)
    start_app(env)  # same spool: delivers what the killed process accepted, without any new request
    wait_for(lambda: len(set(recorder.ids())) >= 60, 90, message="60 webhooks delivered")
    verifier = Webhook(SECRET)
    payloads = sorted(verifier.verify(d.body, d.headers)["data"] for d in recorder.deliveries)
    assert sorted(set(payloads)) == list(range(60))


def spool_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastapi_events", "spool", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.anyio
async def test_the_spool_cli_lists_and_replays_webhook_dead_letters(
    tmp_path: Path, endpoint: Callable[..., tuple[Recorder, str]]
) -> None:
    recorder, url = endpoint(script=[Reply(422), Reply(422), Reply(422)])
    spool = tmp_path / "webhooks.db"
    dead = DeadLetters()
    forwarder = WebhookForwardHandler(
        [WebhookEndpoint(url, SECRET)],
        allow_private_networks=True,
        spool_path=spool,
        relay_interval=0.2,
        retry=RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.1),
        on_dead_letter=dead,
    )
    await forwarder.startup()
    try:
        await forwarder.handle_many(events("order.placed", 3))
        await wait_until(lambda: len(dead.items) == 3, 30)
        assert len(dead.items) == 3

        listed = spool_cli("dead-letters", str(spool), "--json")
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert sorted(row["id"] for row in rows) == sorted(webhook_id for _, webhook_id, _ in dead.items)
        for row in rows:
            assert row["destination"] == url
            assert row["event_name"] == "order.placed"
            assert "422" in row["reason"]

        replayed = spool_cli("replay", str(spool), "--all", "--destination", url)
        assert replayed.returncode == 0, replayed.stderr
        await wait_until(lambda: len(recorder.deliveries) >= 6, 30)  # the endpoint answers 204 now
    finally:
        await forwarder.shutdown(5)
    assert len(recorder.deliveries) == 6
    assert sorted(recorder.ids()[:3]) == sorted(recorder.ids()[3:])  # the same webhook-ids, delivered this time
    assert forwarder.stats.delivered == 3
