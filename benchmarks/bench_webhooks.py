"""Webhook delivery throughput: events/s POSTed (signed, Standard Webhooks) to one local endpoint by
``WebhookForwardHandler``, against a hand-written httpx loop doing the same, measured in the same run.

The endpoint is a minimal ASGI app under uvicorn in a subprocess of its own (its CPU is not ours), counting the
POSTs it answered with 204; every configuration's time runs until the endpoint has counted all N events.

* ``hand-loop``: ``for event: sign; await client.post(...)`` with one pooled ``httpx.AsyncClient`` - what users
  write by hand, one POST at a time (the baseline);
* ``hand-10``: the same with 10 POSTs in flight (``asyncio.gather`` under a semaphore) - a stronger hand-written
  version, for reference;
* ``ours``: ``WebhookForwardHandler`` fed as the middleware feeds it - 50 concurrent "requests" of 10 events each
  (``handle_many``), no spool (each hand-over waits for delivery);
* ``ours+spool``: the same with ``spool_path=`` (events committed to SQLite before the hand-over returns).

A round runs every configuration once in random order; printed: the median events/s over rounds and each
configuration's median ratio to ``hand-loop`` in the same round (goal for ``ours``: >= 1).

Run: ``python benchmarks/bench_webhooks.py [--events 3000 --rounds 5] [--json]``. ``--serve PORT`` is the
endpoint side (used by the script itself).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import Figure, emit, load_note, median, package_info, spread
from bench_uvicorn import free_port, get_json, stop_process

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CONFIGS = ("hand-loop", "hand-10", "ours", "ours+spool")
REQUEST_EVENTS = 10
REQUESTS_IN_FLIGHT = 50


def serve(port: int) -> None:
    import uvicorn

    count = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal count
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        if scope["method"] == "POST":
            count += 1
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body = json.dumps({"count": count}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def received(base: str) -> int:
    return int(get_json(base + "/count")["count"])


async def wait_received(base: str, target: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    # Asked from a thread: a blocking call here would stall the forwarder sharing this event loop.
    while (count := await asyncio.to_thread(received, base)) < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the endpoint counted {count} of {target} events")
        await asyncio.sleep(0.01)


def sign(key: bytes, message_id: str, body: bytes) -> dict[str, str]:
    stamp = int(time.time())
    digest = hmac.new(key, f"{message_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


async def hand_written(url: str, events: int, in_flight: int) -> None:
    import uuid

    import httpx

    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    limit = asyncio.Semaphore(in_flight)
    async with httpx.AsyncClient(timeout=15.0, follow_redirects=False) as client:

        async def post(n: int) -> None:
            body = json.dumps({"type": "bench.event", "timestamp": "2026-01-01T00:00:00Z", "data": {"n": n}}).encode()
            message_id = uuid.uuid4().hex
            async with limit:
                reply = await client.post(url, content=body, headers=sign(key, message_id, body))
            reply.raise_for_status()

        if in_flight == 1:
            for n in range(events):
                await post(n)
        else:
            await asyncio.gather(*(post(n) for n in range(events)))


async def ours(url: str, events: int, spool: str | None) -> Any:
    from fastapi_events.webhooks import WebhookEndpoint, WebhookForwardHandler

    forwarder = WebhookForwardHandler(
        [WebhookEndpoint(url, SECRET)], allow_private_networks=True, spool_path=spool, max_queue_size=100_000
    )
    await forwarder.startup()
    requests = asyncio.Semaphore(REQUESTS_IN_FLIGHT)

    async def request(first: int) -> None:
        async with requests:
            batch = [("bench.event", {"n": n}) for n in range(first, min(first + REQUEST_EVENTS, events))]
            await forwarder.handle_many(batch)

    await asyncio.gather(*(request(first) for first in range(0, events, REQUEST_EVENTS)))
    return forwarder


async def run_one(config: str, base: str, events: int, spool_dir: str) -> float:
    url = base + "/hook"
    before = received(base)
    started = time.perf_counter()
    forwarder = None
    if config == "hand-loop":
        await hand_written(url, events, 1)
    elif config == "hand-10":
        await hand_written(url, events, 10)
    else:
        spool = str(Path(spool_dir) / f"spool-{time.monotonic_ns()}.db") if config == "ours+spool" else None
        forwarder = await ours(url, events, spool)
    await wait_received(base, before + events)
    elapsed = time.perf_counter() - started
    if forwarder is not None:
        await forwarder.shutdown(30)
        stats = forwarder.stats
        if stats.delivered != events or stats.dead_lettered or stats.dropped:
            raise RuntimeError(f"{config}: {stats}")
    if received(base) != before + events:
        raise RuntimeError(f"{config}: the endpoint counted {received(base) - before}, expected {events}")
    return events / elapsed


async def main_async(args: argparse.Namespace, base: str) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {config: [] for config in CONFIGS}
    with tempfile.TemporaryDirectory() as spool_dir:
        await run_one("ours", base, min(200, args.events), spool_dir)  # warm-up: imports, first connections
        for _ in range(args.rounds):
            order = list(CONFIGS)
            random.shuffle(order)
            for config in order:
                rates[config].append(await run_one(config, base, args.events, spool_dir))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    port = free_port()
    endpoint = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                received(base)
                break
            except OSError:
                if time.monotonic() > deadline or endpoint.poll() is not None:
                    raise RuntimeError("the endpoint did not start") from None
                time.sleep(0.1)
        rates = asyncio.run(main_async(args, base))
    finally:
        stop_process(endpoint)

    baseline = rates["hand-loop"]
    figures = []
    for config in CONFIGS:
        ratios = [rate / base_rate for rate, base_rate in zip(rates[config], baseline, strict=True)]
        figures.append(
            Figure(
                "webhooks",
                f"{config}_events_per_s",
                f"{config} events/s",
                median(rates[config]),
                "events/s",
                extra={"rates": spread(rates[config])},
            )
        )
        if config != "hand-loop":
            figures.append(
                Figure(
                    "webhooks",
                    f"{config}_vs_hand_loop",
                    f"{config} / hand-loop",
                    median(ratios),
                    "x",
                    target=1.0 if config == "ours" else None,
                    target_op=">=" if config == "ours" else None,
                    extra={"ratios": spread(ratios)},
                )
            )
    meta = {
        **package_info(),
        "load": load_note(),
        "method": f"{args.events} events x {args.rounds} rounds, counted at the endpoint",
    }
    emit("webhooks: events/s to one local endpoint", meta, figures, args.json)


if __name__ == "__main__":
    main()
