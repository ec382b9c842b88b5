"""Forwarding to a real moto_server SQS queue: events/s and event-loop lag, ours vs. fastapi-events 0.12.2.

One invocation measures three configurations one after the other against the same ``moto_server`` (started
here on a free 127.0.0.1 port), each in its own worker process under its own interpreter (see ``_venvs.py``):

* ``ours``        - ``SQSForwardHandler(queue_url, "us-east-1", endpoint_url=..., <credentials>)``;
* ``ours+spool``  - the same with ``spool_path=`` a file in a temp directory;
* ``0.12.2``      - the old package's ``SQSForwardHandler`` with the same arguments.

In each worker a FastAPI app with ``EventHandlerASGIMiddleware(handlers=[that handler])`` is driven in-process
through its ASGI ``__call__`` (``bench_core``'s ``http_call`` / ``Lifespan``): requests one after another, the
loop given a turn between two of them (as a server would), each request dispatching 10 events with a small dict
payload. A ticker task (``asyncio.sleep(0.001)`` in a loop, recording how late each wake-up is) runs from the
first request until every event is in the queue; its worst and 99th-percentile lateness are the loop lag.

Counting: a separate consumer process (not the app's: its boto3 work would compete for the app's GIL) receives
and deletes messages with several threads and records which (request, index) pairs arrived, so losses and
duplicates are exact. Deleting promptly is not optional: moto computes the queue's attributes, which walks every
stored message, on every send and receive, so a queue left to fill up makes each call slower (10 000 stored
messages would take tens of minutes).

* ours: the run ends when ``fastapi_events.drain()`` returns (every event acknowledged by SQS), then the
  consumer must report exactly the number of events dispatched;
* 0.12.2: requests stop being issued after ``--old-timeout`` seconds (it sends from the request path, one HTTP
  round trip at a time); the run ends when the consumer has received what was dispatched, or after
  ``--drain-timeout`` more seconds. Its events/s are on what it managed, and the table says how much that was.

Telling the package's lag from the machine's (notes under the table): GC pauses during the run
(``gc.callbacks``); the worst lag over the ticks in which the OS did not preempt the loop's thread
(``getrusage(RUSAGE_THREAD)`` involuntary context switches); and, as a control row, the same ticker in an
otherwise idle process running meanwhile.

Before the timed run, 20 warm-up requests (their events are recognisable and not counted) create the boto3
client and the connection, then one ``gc.collect()`` does the first full collection that start-up's objects
would otherwise trigger during the run (as in a server that has been up for a while; no GC setting is changed).
Run: ``.venv/bin/python benchmarks/bench_forwarders.py [--json]`` (~2-3 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import _venvs
from _common import Figure, load_note

BENCH_DIR = Path(__file__).resolve().parent
SCRIPT = Path(__file__).resolve()
REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
EVENT_NAME = "bench.forwarded"
EVENTS_PER_REQUEST = 10
WARMUP_REQUESTS = 20
TICK = 0.001
LAG_TARGET_MS = 5.0
CONFIGS = ("ours", "ours+spool", "0.12.2")

# ------------------------------------------------------------------------------------------------ moto_server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Moto:
    """``moto_server -H 127.0.0.1 -p <free port>`` from the repository venv, in its own process group."""

    def __init__(self, log_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / "moto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        exe = Path(_venvs.ours_python()).parent / "moto_server"
        command = [str(exe if exe.exists() else "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        log_text = self.log_path.read_text(errors="replace")[-4000:]
        self.stop()
        raise SystemExit(f"moto_server did not start on port {self.port}:\n{log_text}")

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.proc = None


# ------------------------------------------------------------------------------------------------ consumer
# Runs as its own process (``--consume``). Protocol, one line each way:
#   stdout "ready"                       once the receiving threads run
#   stdin  "wait <phase> <n> <timeout>"  -> stdout JSON {"phase", "unique", "duplicates", "at"} once <n> distinct
#                                           events of <phase> arrived or <timeout> s passed ("at": time.time()
#                                           of the last new event of that phase)
#   stdin  "quit"                        -> threads stop, the process exits


def _event_key(body: str) -> tuple[str, int, int] | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    payload = doc[1] if isinstance(doc, list) and len(doc) == 2 else doc
    if isinstance(payload, dict) and isinstance(payload.get("payload"), dict):
        payload = payload["payload"]
    try:
        return str(payload["phase"]), int(payload["r"]), int(payload["i"])
    except (KeyError, TypeError, ValueError):
        return None


def consume_main(endpoint: str, queue_url: str, threads: int) -> None:
    import boto3

    seen: set[tuple[str, int, int]] = set()
    message_ids: set[str] = set()
    stats: dict[str, dict[str, float]] = {}
    cond = threading.Condition()
    stop = threading.Event()

    def receiver() -> None:
        client = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)
        while not stop.is_set():
            try:
                messages = client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
                    "Messages", []
                )
                if messages:
                    client.delete_message_batch(
                        QueueUrl=queue_url,
                        Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)],
                    )
            except Exception as exc:
                print(f"[consumer] {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                time.sleep(0.1)
                continue
            if not messages:
                time.sleep(0.005)
                continue
            now = time.time()
            with cond:
                for message in messages:
                    key = _event_key(message["Body"])
                    phase = key[0] if key else "?"
                    entry = stats.setdefault(phase, {"unique": 0, "duplicates": 0, "redelivered": 0, "at": 0.0})
                    if key is not None and key in seen:
                        # the same SQS message handed out twice (a receive race in moto), or sent twice
                        counter = "redelivered" if message["MessageId"] in message_ids else "duplicates"
                        entry[counter] += 1
                        continue
                    message_ids.add(message["MessageId"])
                    if key is not None:
                        seen.add(key)
                    entry["unique"] += 1
                    entry["at"] = now
                cond.notify_all()

    workers = [threading.Thread(target=receiver, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    print("ready", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == "quit":
            break
        if parts[0] == "wait":
            phase, wanted, timeout = parts[1], int(parts[2]), float(parts[3])
            deadline = time.monotonic() + timeout
            with cond:
                while stats.get(phase, {}).get("unique", 0) < wanted and time.monotonic() < deadline:
                    cond.wait(timeout=max(0.0, deadline - time.monotonic()))
                entry = dict(stats.get(phase, {"unique": 0, "duplicates": 0, "redelivered": 0, "at": 0.0}))
            print(json.dumps({"phase": phase, **entry}), flush=True)
    stop.set()
    for worker in workers:
        worker.join(timeout=5)


class Consumer:
    """The worker's handle on the consumer process; talks to it through asyncio pipes (no thread, no GIL hog)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, endpoint: str, queue_url: str, threads: int) -> Consumer:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            "--consume",
            "--endpoint",
            endpoint,
            "--queue-url",
            queue_url,
            "--consumer-threads",
            str(threads),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        consumer = cls(proc)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise RuntimeError(f"consumer did not start: {line!r}")
        return consumer

    async def wait(self, phase: str, wanted: int, timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(f"wait {phase} {wanted} {timeout}\n".encode())
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        result: dict[str, Any] = json.loads(line)
        return result

    async def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(b"quit\n")
            with contextlib.suppress(ConnectionError):
                await self.proc.stdin.drain()
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# ------------------------------------------------------------------------------------------------ worker


class GCPauses:
    """Durations of the collector's runs (``gc.callbacks``), to tell GC pauses from other loop lag."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self._began = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._began))

    def start(self) -> None:
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, Any]:
        gen2 = [d for g, d in self.pauses if g == 2]
        return {
            "collections": len(self.pauses),
            "gen2": len(gen2),
            "max_ms": max((d for _, d in self.pauses), default=0.0) * 1e3,
            "gen2_max_ms": max(gen2, default=0.0) * 1e3,
            "over_target": sum(1 for _, d in self.pauses if d * 1e3 > LAG_TARGET_MS),
        }


class Ticker:
    """Wakes up every ``TICK`` s and records how late each wake-up was (the loop's lag)."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.at: list[float] = []  # perf_counter() of each wake-up
        # whether the OS took the CPU away from the loop's thread during the tick (involuntary context switch):
        # on a busy machine that is lag the process did not cause; GIL waits are voluntary switches
        self.preempted: list[bool] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        clock = time.perf_counter
        lags, at, preempted = self.lags, self.at, self.preempted
        usage, who = resource.getrusage, resource.RUSAGE_THREAD
        while True:
            switches = usage(who).ru_nivcsw
            before = clock()
            await asyncio.sleep(TICK)
            now = clock()
            lags.append(now - before - TICK)
            at.append(now)
            preempted.append(usage(who).ru_nivcsw != switches)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def summary(self, origin: float) -> dict[str, Any]:
        if not self.lags:
            return {"max_ms": 0.0, "p99_ms": 0.0, "p50_ms": 0.0, "ticks": 0}
        ordered = sorted(self.lags)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        over = sum(1 for lag in ordered if lag * 1e3 > LAG_TARGET_MS)
        own = [lag for lag, preempted in zip(self.lags, self.preempted, strict=True) if not preempted]
        return {
            "max_ms": ordered[-1] * 1e3,
            "p99_ms": p99 * 1e3,
            "p50_ms": statistics.median(ordered) * 1e3,
            "ticks": len(ordered),
            "ticks_over_target": over,
            "ticks_preempted": sum(self.preempted),
            # the same without the ticks during which the OS preempted the loop's thread
            "max_not_preempted_ms": max(own, default=0.0) * 1e3,
            "over_target_not_preempted": sum(1 for lag in own if lag * 1e3 > LAG_TARGET_MS),
            # the five worst: (seconds after the first request, lag ms)
            "worst": [
                (round(self.at[n] - origin, 3), round(self.lags[n] * 1e3, 2))
                for n in sorted(range(len(self.lags)), key=self.lags.__getitem__)[-5:]
            ],
        }


def _build_app(config: str, queue_url: str, endpoint: str, spool_dir: Path) -> tuple[Any, Any]:
    from fastapi import FastAPI
    from starlette.responses import Response

    from fastapi_events.dispatcher import dispatch
    from fastapi_events.handlers.aws import SQSForwardHandler
    from fastapi_events.middleware import EventHandlerASGIMiddleware

    options: dict[str, Any] = {"endpoint_url": endpoint, **CREDENTIALS}
    if config == "ours+spool":
        options["spool_path"] = str(spool_dir / "spool.db")
    handler = SQSForwardHandler(queue_url=queue_url, region_name=REGION, **options)
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[handler])

    async def endpoint_fn(phase: str, r: int) -> Response:
        for i in range(EVENTS_PER_REQUEST):
            dispatch(EVENT_NAME, payload={"phase": phase, "r": r, "i": i, "user": "u-42", "tags": ["a", "b"]})
        return Response(b"ok", media_type="text/plain")

    app.add_api_route("/events/{phase}/{r}", endpoint_fn, methods=["GET"])
    return app, handler


async def worker_async(args: argparse.Namespace) -> dict[str, Any]:
    import boto3
    from _common import package_info
    from bench_core import Lifespan, http_call

    import fastapi_events

    config: str = args.worker
    drain = getattr(fastapi_events, "drain", None)
    is_ours = config.startswith("ours")
    if is_ours and drain is None:
        raise SystemExit(f"{config}: this fastapi_events has no drain(); wrong interpreter?")

    sqs = boto3.client("sqs", endpoint_url=args.endpoint, region_name=REGION, **CREDENTIALS)
    queue_name = f"bench-{config.replace('+', '-').replace('.', '-')}-{uuid.uuid4().hex[:8]}"
    queue_url: str = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    spool_dir = Path(tempfile.mkdtemp(prefix="fe-bench-forwarders-"))
    result: dict[str, Any] = {"config": config, "queue": queue_name, **package_info()}
    consumer = await Consumer.start(args.endpoint, queue_url, args.consumer_threads)
    app, handler = _build_app(config, queue_url, args.endpoint, spool_dir)
    lifespan = Lifespan(app)
    await lifespan.start()
    state = lifespan.state
    try:
        # warm-up: boto3 client, connection, first batch; not counted
        for r in range(WARMUP_REQUESTS):
            if await http_call(app, f"/events/warm/{r}", state) != 200:
                raise RuntimeError("warm-up request failed")
            await asyncio.sleep(0)
        if drain is not None:
            await drain(60)
        warm = await consumer.wait("warm", WARMUP_REQUESTS * EVENTS_PER_REQUEST, 60)
        result["warmup_received"] = warm["unique"]
        # Start-up (imports, the app, boto3's clients and their service models) leaves tens of thousands of new
        # objects that trigger the process's first full collection some time later, in any app: have it here,
        # as a server that has run for a while has, so that the timed part shows what forwarding itself costs.
        if not args.keep_startup_gc:
            gc.collect()

        gc_pauses = GCPauses()
        gc_pauses.start()
        ticker = Ticker()
        ticker.start()
        await asyncio.sleep(0.05)  # the ticker's first ticks: idle baseline
        started_wall, started = time.time(), time.perf_counter()
        cap = None if is_ours else args.old_timeout
        requests = 0
        for r in range(args.requests):
            if cap is not None and time.perf_counter() - started > cap:
                break
            status = await http_call(app, f"/events/run/{r}", state)
            if status != 200:
                raise RuntimeError(f"request {r}: HTTP {status}")
            requests += 1
            await asyncio.sleep(0)  # a server would let other tasks run between two requests
        requests_done = time.perf_counter()
        dispatched = requests * EVENTS_PER_REQUEST
        drained_in_time = None
        if drain is not None:
            drained_in_time = await drain(args.drain_timeout + 60)
        drained = time.perf_counter()
        seen = await consumer.wait("run", dispatched, args.drain_timeout)
        counted = time.perf_counter()
        await ticker.stop()
        gc_pauses.stop()
    finally:
        await lifespan.stop()
        await consumer.stop()
    leftover = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    with contextlib.suppress(Exception):
        sqs.delete_queue(QueueUrl=queue_url)
    spool_bytes = _remove_dir(spool_dir)

    last_arrival = seen["at"] - started_wall if seen["unique"] else float("nan")
    # "until every event is in the queue": ours knows (drain() returns once SQS acknowledged everything);
    # for 0.12.2 it is when the consumer got the last of them.
    end = drained - started if is_ours else max(requests_done - started, last_arrival)
    result.update(
        requests=requests,
        requests_wanted=args.requests,
        dispatched=dispatched,
        delivered=int(seen["unique"]),
        duplicates=int(seen["duplicates"]),
        redelivered=int(seen["redelivered"]),
        capped=requests < args.requests,
        drained_in_time=drained_in_time,
        requests_seconds=requests_done - started,
        end_seconds=end,
        consumer_seconds=last_arrival,
        counted_seconds=counted - started,
        events_per_s=(seen["unique"] if not is_ours else dispatched) / end if end > 0 else 0.0,
        consumer_events_per_s=seen["unique"] / last_arrival if seen["unique"] else 0.0,
        request_ms=(requests_done - started) / max(1, requests) * 1e3,
        lag=ticker.summary(started),
        gc=gc_pauses.summary(),
        spool_bytes=spool_bytes,
        left_in_queue=int(leftover.get("ApproximateNumberOfMessages", 0))
        + int(leftover.get("ApproximateNumberOfMessagesNotVisible", 0)),
        stats=_handler_stats(handler),
    )
    return result


def _remove_dir(path: Path) -> int:
    """Remove ``path``; returns the total size of the files it held."""
    size = sum(p.stat().st_size for p in path.iterdir()) if path.exists() else 0
    shutil.rmtree(path, ignore_errors=True)
    return size


def _handler_stats(handler: Any) -> dict[str, Any]:
    stats = getattr(handler, "stats", None)
    if stats is None:
        return {}
    value = stats() if callable(stats) else stats
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return {k: v for k, v in asdict(value).items() if isinstance(v, (int, float, str))}
    return value if isinstance(value, dict) else {}


async def control_async() -> dict[str, Any]:
    """The same ticker in an otherwise idle process, until stdin closes: the lag the machine alone causes."""
    ticker = Ticker()
    ticker.start()
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    closed = loop.create_future()

    def on_stdin() -> None:
        if not os.read(sys.stdin.fileno(), 4096) and not closed.done():
            closed.set_result(None)

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    await closed
    loop.remove_reader(sys.stdin.fileno())
    await ticker.stop()
    return ticker.summary(started)


# ------------------------------------------------------------------------------------------------ orchestration


def _interpreter(config: str) -> _venvs.Interpreter:
    return _venvs.ensure_old_venv() if config == _venvs.OLD_VERSION else _venvs.ours()


def run_worker(config: str, moto: Moto, args: argparse.Namespace) -> dict[str, Any]:
    interp = _interpreter(config)
    argv = [
        str(SCRIPT),
        "--worker",
        config,
        "--endpoint",
        moto.url,
        "--requests",
        str(args.requests),
        "--old-timeout",
        str(args.old_timeout),
        "--drain-timeout",
        str(args.drain_timeout),
        "--consumer-threads",
        str(args.consumer_threads),
        *(["--keep-startup-gc"] if args.keep_startup_gc else []),
    ]
    print(f"[bench_forwarders] {config}: running ({interp.python})", file=sys.stderr, flush=True)
    began = time.monotonic()
    ours = _venvs.ours()
    control = subprocess.Popen(
        [ours.python, str(SCRIPT), "--control"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ours.env,
        cwd=str(BENCH_DIR),
    )
    try:
        res = interp.run(argv, stdout=subprocess.PIPE)
    finally:
        control_out, _ = control.communicate(timeout=30)
    lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
    if res.returncode != 0 or not lines:
        print(f"[bench_forwarders] {config}: failed (exit {res.returncode})", file=sys.stderr, flush=True)
        return {"config": config, "error": f"exit {res.returncode}"}
    doc: dict[str, Any] = json.loads(lines[-1])
    doc["control_lag"] = json.loads(control_out) if control_out.strip() else {}
    print(
        f"[bench_forwarders] {config}: {doc['delivered']}/{doc['dispatched']} events,"
        f" {doc['events_per_s']:.0f} events/s, worst lag {doc['lag']['max_ms']:.1f} ms"
        f" ({time.monotonic() - began:.0f}s)",
        file=sys.stderr,
        flush=True,
    )
    return doc


def figures_for(doc: dict[str, Any]) -> list[Figure]:
    if "error" in doc:
        return []
    lag = doc["lag"]
    capped = " (capped)" if doc["capped"] else ""
    base = {"requests": doc["requests"], "dispatched": doc["dispatched"]}
    return [
        Figure("forwarders", "delivered", "events in the queue / dispatched", doc["delivered"], "events",
               extra={**base, "duplicates": doc["duplicates"], "left_in_queue": doc["left_in_queue"],
                      "lost": doc["dispatched"] - doc["delivered"]}),
        Figure("forwarders", "events_per_s", f"events/s until all in the queue{capped}", doc["events_per_s"],
               "events/s", extra={**base, "seconds": round(doc["end_seconds"], 2)}),
        Figure("forwarders", "consumer_events_per_s", "events/s until the consumer had all",
               doc["consumer_events_per_s"], "events/s", extra={"seconds": round(doc["consumer_seconds"], 2)}),
        Figure("forwarders", "request_ms", "mean request time (ms)", doc["request_ms"], "ms",
               extra={"requests_seconds": round(doc["requests_seconds"], 2)}),
        Figure("forwarders", "lag_max_ms", "worst event-loop lag (ms)", lag["max_ms"], "ms", LAG_TARGET_MS, "<=",
               {"ticks": lag["ticks"], "ticks_over_target": lag.get("ticks_over_target", 0),
                "worst_at_s_ms": lag.get("worst", [])}),
        Figure("forwarders", "lag_max_own_ms", "worst lag, OS preemption excluded (ms)", lag["max_not_preempted_ms"],
               "ms", extra={"ticks_preempted": lag["ticks_preempted"],
                            "over_target": lag["over_target_not_preempted"]}),
        Figure("forwarders", "control_lag_max_ms", "worst lag of an idle control process (ms)",
               doc["control_lag"].get("max_ms", float("nan")), "ms",
               extra={"p99_ms": round(doc["control_lag"].get("p99_ms", float("nan")), 3),
                      "ticks_over_target": doc["control_lag"].get("ticks_over_target")}),
        Figure("forwarders", "lag_p99_ms", "p99 event-loop lag (ms)", lag["p99_ms"], "ms", LAG_TARGET_MS, "<=",
               extra={"p50_ms": round(lag["p50_ms"], 3)}),
        Figure("forwarders", "control_lag_p99_ms", "p99 lag of an idle control process (ms)",
               doc["control_lag"].get("p99_ms", float("nan")), "ms"),
        # issue 12: the package may not stall the loop much beyond what the machine itself does meanwhile
        Figure("forwarders", "lag_vs_control", "worst lag / the control process's worst",
               lag["max_ms"] / doc["control_lag"]["max_ms"] if doc["control_lag"].get("max_ms") else float("nan"),
               "x", 1.5, "<="),
    ]  # fmt: skip


def _cell(fig: Figure | None, doc: dict[str, Any]) -> str:
    if fig is None:
        return "n/a"
    if fig.key == "delivered":
        text = f"{doc['delivered']}/{doc['dispatched']}"
        if doc["capped"]:
            text += f" of {doc['requests_wanted'] * EVENTS_PER_REQUEST} wanted"
        if doc["duplicates"]:
            text += f", {doc['duplicates']} dup"
        return text
    text = f"{fig.value:.0f}" if fig.unit == "events/s" else f"{fig.value:.2f}"
    if fig.key == "events_per_s":
        text += f" ({doc['end_seconds']:.1f} s)"
    if fig.key == "consumer_events_per_s":
        text += f" ({doc['consumer_seconds']:.1f} s)"
    if fig.ok is not None:
        text += " ✓" if fig.ok else " ✗"
    return text


def print_markdown(docs: dict[str, dict[str, Any]], figures: dict[str, list[Figure]], args: argparse.Namespace) -> None:
    rows: list[tuple[str, str]] = [
        ("delivered", "events in the queue / dispatched"),
        ("events_per_s", "events/s until every event is in the queue"),
        ("consumer_events_per_s", "events/s until the consumer received every event"),
        ("request_ms", "mean request time, 10 events (ms)"),
        ("lag_max_ms", "**worst event-loop lag (ms)**, goal <= 5"),
        ("lag_max_own_ms", "worst lag in ticks the OS did not preempt the loop thread (ms)"),
        ("lag_p99_ms", "p99 event-loop lag (ms), goal <= 5"),
        ("control_lag_max_ms", "same ticker in an idle process meanwhile: worst lag (ms)"),
        ("control_lag_p99_ms", "same ticker in an idle process meanwhile: p99 lag (ms)"),
        ("lag_vs_control", "**worst lag ÷ the idle process's worst**, goal <= 1.5"),
    ]
    print(
        f"\n### bench_forwarders: {args.requests} requests x {EVENTS_PER_REQUEST} events -> moto_server SQS"
        " (in-process ASGI)\n"
    )
    print("| figure | " + " | ".join(CONFIGS) + " |")
    print("|---|" + "---|" * len(CONFIGS))
    for key, label in rows:
        cells = []
        for config in CONFIGS:
            fig = next((f for f in figures.get(config, []) if f.key == key), None)
            cells.append(_cell(fig, docs.get(config, {})))
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    old = docs.get(_venvs.OLD_VERSION, {})
    if old.get("capped"):
        print(
            f"0.12.2 was capped: requests stopped after {args.old_timeout:g} s ({old['requests']} of"
            f" {args.requests} requests issued); its events/s are over what it managed in that time."
        )
    for config in CONFIGS:
        doc = docs.get(config, {})
        if "error" in doc:
            print(f"{config}: worker failed ({doc['error']})")
        elif doc:
            print(
                f"{config}: fastapi_events {doc['version']} from {doc['location']}; requests took"
                f" {doc['requests_seconds']:.1f} s; lag p50 {doc['lag']['p50_ms']:.3f} ms over {doc['lag']['ticks']}"
                f" ticks, {doc['lag'].get('ticks_over_target', 0)} over {LAG_TARGET_MS:g} ms, worst five"
                f" (s after start, ms) {doc['lag'].get('worst', [])};"
                f" {doc['left_in_queue']} left in the queue"
                + (f"; spool file {doc['spool_bytes']} bytes after the run" if config == "ours+spool" else "")
                + f"; GC during the run: {doc['gc']['collections']} collections, {doc['gc']['gen2']} full,"
                f" longest {doc['gc']['max_ms']:.1f} ms, {doc['gc']['over_target']} over {LAG_TARGET_MS:g} ms"
                + (
                    f"; consumer got {doc['redelivered']} message(s) twice (same MessageId)"
                    if doc["redelivered"]
                    else ""
                )
                + (f"; forwarder stats {doc['stats']}" if doc.get("stats") else "")
            )
    print(f"stack: {next((d['stack'] for d in docs.values() if 'stack' in d), '?')}")
    print(f"load: {load_note()}; consumer: separate process, {args.consumer_threads} receive+delete threads")
    sys.stdout.flush()


def orchestrate(args: argparse.Namespace) -> int:
    configs = [c for c in CONFIGS if c in args.only] if args.only else list(CONFIGS)
    if _venvs.OLD_VERSION in configs:
        _venvs.ensure_old_venv()
    log_dir = Path(tempfile.mkdtemp(prefix="fe-bench-moto-"))
    moto = Moto(log_dir)
    moto.start()
    docs: dict[str, dict[str, Any]] = {}
    try:
        for config in configs:
            docs[config] = run_worker(config, moto, args)
    finally:
        moto.stop()
        shutil.rmtree(log_dir, ignore_errors=True)
    figures = {config: figures_for(doc) for config, doc in docs.items()}
    if args.json:
        for config, figs in figures.items():
            doc = docs[config]
            meta = {k: doc.get(k) for k in ("version", "location", "stack")}
            meta.update(package=config, load=load_note(), method="in-process ASGI, moto_server SQS")
            for fig in figs:
                print(fig.as_json(meta))
        sys.stdout.flush()
    else:
        print_markdown(docs, figures, args)
    failed = [c for c, d in docs.items() if "error" in d]
    lost = [c for c, d in docs.items() if c.startswith("ours") and d.get("delivered") != d.get("dispatched")]
    return 1 if failed or lost else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="one JSON object per figure on stdout")
    parser.add_argument("--requests", type=int, default=1000, help="requests per run (10 events each)")
    parser.add_argument("--old-timeout", type=float, default=20.0, help="0.12.2: stop issuing requests after this")
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="max wait for the queue after requests")
    parser.add_argument("--consumer-threads", type=int, default=4, help="receive+delete threads of the consumer")
    parser.add_argument("--only", nargs="+", choices=CONFIGS, help="run only these configurations")
    parser.add_argument(
        "--keep-startup-gc", action="store_true", help="no gc.collect() after the warm-up"
    )
    # internal: the worker and consumer processes
    parser.add_argument("--worker", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--consume", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--control", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--queue-url", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.consume:
        consume_main(args.endpoint, args.queue_url, args.consumer_threads)
        return 0
    if args.control:
        print(json.dumps(asyncio.run(control_async())), flush=True)
        return 0
    if args.worker:
        doc = asyncio.run(worker_async(args))
        print(json.dumps(doc, default=str), flush=True)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
