"""Forwarder throughput and end-to-end consumer throughput for Kafka (tansu), Redis Streams, SQS (moto_server) and
Pub/Sub (Google's emulator).

* forwarder: events/s from ``handle_many`` (10 events per call, like a busy request) until the broker
  confirmed the last one (``flush``), in-memory queue and with a spool file;
* end to end: N consumer processes (``python -m fastapi_events consume``) are started and given time to join
  their group, then events go forwarder -> broker -> consumers; events/s from the first ``handle_many`` until
  the last event was handled. The handler does no work, so this is the pipeline's own cost.

Servers are started like the test suite does (``tests/_servers.py``). The machine is small and shared (see
``load`` in the output): compare figures of one run with each other, not across runs.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_consumers.py [--events 20000] [--processes 1,2,4]
        [--brokers kafka,redis,sqs,pubsub]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi_events.handlers.local import LocalHandler

# Events are handed over faster than any broker takes them: the memory queue must hold a whole run.
QUEUE_SIZE = 1_000_000
BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent

# The handler the consumer processes run (``--handlers bench_consumers:handler``, imported with the benchmark
# directory as working directory): one 2-byte line per event, so the file size counts handled events.
handler = LocalHandler()
_out_fd: int | None = None


@handler.register(event_name="bench.*")
async def count_event(event: Any) -> None:
    global _out_fd
    if _out_fd is None:
        _out_fd = os.open(os.environ["BENCH_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_out_fd, b"x\n")


def handled(path: Path) -> int:
    try:
        return path.stat().st_size // 2
    except FileNotFoundError:
        return 0


async def wait_handled(path: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while handled(path) < count:  # the count lives in another process's file: polling is the only way
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {handled(path)} of {count} handled")
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------------------------- brokers


class Broker:
    name = ""
    #: Events per figure at most: moto_server and the Pub/Sub emulator take a large run in minutes, not seconds.
    max_events = 1_000_000

    def __init__(self, server: Any) -> None:
        self.server = server

    def forwarder(self, target: str, spool: Path | None) -> Any:
        raise NotImplementedError

    def consumer_url(self, target: str) -> str:
        raise NotImplementedError

    def ready(self, logs: list[Path]) -> bool:
        return all(" consuming " in log.read_text(errors="replace") for log in logs)

    def env(self) -> dict[str, str]:
        """What the consumer processes need in their environment to reach the server."""
        return {}


class Kafka(Broker):
    name = "kafka"
    partitions = 4  # one per consumer process at most, so that 4 processes all have work

    def forwarder(self, target: str, spool: Path | None) -> Any:
        from confluent_kafka.admin import AdminClient, NewTopic

        from fastapi_events.handlers.kafka import KafkaForwardHandler

        admin = AdminClient({"bootstrap.servers": self.server.bootstrap_servers})
        for future in admin.create_topics([NewTopic(target, num_partitions=self.partitions)]).values():
            future.result(30)

        return KafkaForwardHandler(
            target,
            self.server.bootstrap_servers,
            key=lambda e: str(e[1] % 64),
            spool_path=spool,
            max_queue_size=QUEUE_SIZE,
        )

    def consumer_url(self, target: str) -> str:
        return (
            f"kafka://{self.server.bootstrap_servers}/{target}?group=bench"
            "&session.timeout.ms=6000&heartbeat.interval.ms=500"
        )

    def ready(self, logs: list[Path]) -> bool:
        # Each process's latest assignment; ready once they cover every partition between them.
        latest: list[set[int]] = []
        for log in logs:
            text = log.read_text(errors="replace")
            events = re.findall(r"(assigned|revoked) \S+ partitions \[([\d, ]*)\]", text)
            owned: set[int] = set()
            for kind, numbers in events:
                parts = {int(n) for n in numbers.replace(" ", "").split(",") if n}
                owned = owned | parts if kind == "assigned" else owned - parts
            latest.append(owned)
        covered = set().union(*latest) if latest else set()
        return len(covered) == self.partitions and all(latest[: self.partitions])


class Redis(Broker):
    name = "redis"

    def forwarder(self, target: str, spool: Path | None) -> Any:
        from fastapi_events.handlers.redis import RedisStreamForwardHandler

        return RedisStreamForwardHandler(target, self.server.url, spool_path=spool, max_queue_size=QUEUE_SIZE)

    def consumer_url(self, target: str) -> str:
        base = self.server.url.rsplit("/", 1)[0]
        return f"{base}/0/{target}?group=bench"


class SQS(Broker):
    name = "sqs"
    max_events = 1_000  # moto_server takes about a hundred a second

    def __init__(self, server: Any) -> None:
        import boto3

        super().__init__(server)
        self.client = boto3.client("sqs", **server.client_kwargs)

    def forwarder(self, target: str, spool: Path | None) -> Any:
        from fastapi_events import SQSForwardHandler

        url = self.client.create_queue(QueueName=target)["QueueUrl"]
        kwargs = dict(self.server.client_kwargs)
        region = kwargs.pop("region_name")
        return SQSForwardHandler(url, region, spool_path=spool, max_queue_size=QUEUE_SIZE, **kwargs)

    def consumer_url(self, target: str) -> str:
        return f"sqs://{target}"  # region, endpoint and credentials from env()

    def env(self) -> dict[str, str]:
        return dict(self.server.env)


class PubSub(Broker):
    name = "pubsub"
    max_events = 5_000

    def __init__(self, server: Any) -> None:
        super().__init__(server)
        os.environ.update(server.env)  # this driver process only: its clients talk to the emulator
        from google.cloud import pubsub_v1

        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()

    def forwarder(self, target: str, spool: Path | None) -> Any:
        from fastapi_events import GoogleCloudSimplePubSubHandler

        project = self.server.project
        # The subscription first: Pub/Sub keeps a message only for the subscriptions that exist when it arrives.
        topic = self.publisher.create_topic(name=self.publisher.topic_path(project, target)).name
        self.subscriber.create_subscription(name=self.subscriber.subscription_path(project, target), topic=topic)
        return GoogleCloudSimplePubSubHandler(project, target, spool_path=spool, max_queue_size=QUEUE_SIZE)

    def consumer_url(self, target: str) -> str:
        return f"pubsub://{self.server.project}/{target}"

    def env(self) -> dict[str, str]:
        return dict(self.server.env)


# --------------------------------------------------------------------------------------------- measuring


async def feed(forwarder: Any, events: int) -> float:
    """Hand ``events`` to the forwarder, 10 per call; returns the start time."""
    started = time.perf_counter()
    for first in range(0, events, 10):
        await forwarder.handle_many([("bench.event", n) for n in range(first, min(first + 10, events))])
        if first % 1000 == 0:
            await asyncio.sleep(0)  # let the sender run, as between requests
    return started


async def forwarder_rate(broker: Broker, events: int, spool: Path | None) -> float:
    forwarder = broker.forwarder(f"fwd-{uuid.uuid4().hex[:8]}", spool)
    await forwarder.startup()
    await forwarder.handle_many([("bench.warmup", 0)])
    await forwarder.flush(60)
    started = await feed(forwarder, events)
    await forwarder.flush(300)
    elapsed = time.perf_counter() - started
    delivered = forwarder.stats.delivered - 1
    await forwarder.shutdown()
    if delivered != events:
        raise RuntimeError(f"{broker.name}: {delivered} of {events} delivered")
    return events / elapsed


def start_consumers(broker: Broker, target: str, count: int, workdir: Path, out: Path) -> tuple[list[Any], list[Path]]:
    env = dict(
        os.environ,
        **broker.env(),
        BENCH_OUT=str(out),
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(BENCH_DIR)]),
    )
    processes, logs = [], []
    for index in range(count):
        log = workdir / f"consumer-{target}-{index}.log"
        logs.append(log)
        with open(log, "wb") as log_file:
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "fastapi_events",
                        "consume",
                        broker.consumer_url(target),
                        "--handlers",
                        "bench_consumers:handler",
                        "--concurrency",
                        "32",
                    ],
                    cwd=BENCH_DIR,
                    env=env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            )
    return processes, logs


async def end_to_end_rate(broker: Broker, events: int, processes: int, workdir: Path) -> float:
    target = f"e2e-{uuid.uuid4().hex[:8]}"
    out = workdir / f"{target}.out"
    forwarder = broker.forwarder(target, None)
    await forwarder.startup()
    await forwarder.handle_many([("bench.warmup", -1)])  # creates the topic/stream before consumers join
    await forwarder.flush(60)
    procs, logs = start_consumers(broker, target, processes, workdir, out)
    try:
        deadline = time.monotonic() + 90
        stable_since = None
        while True:  # ready, and still ready a moment later (Kafka rebalances in rounds)
            if broker.ready(logs):
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since > 2.0:
                    break
            else:
                stable_since = None
            if time.monotonic() > deadline:
                raise RuntimeError(f"consumers not ready: {[log.read_text()[-500:] for log in logs]}")
            await asyncio.sleep(0.1)
        await wait_handled(out, 1, 60)
        started = await feed(forwarder, events)
        await wait_handled(out, events + 1, 600)
        elapsed = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(60)
        await forwarder.shutdown()
    return events / elapsed


# --------------------------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> list[tuple[str, str, float]]:
    sys.path.insert(0, str(REPO_ROOT))
    from tests._servers import KafkaBroker, MotoServer, PubSubEmulator, RedisServer

    rows: list[tuple[str, str, float]] = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-consumers-"))
    servers: dict[str, tuple[Any, type[Broker]]] = {
        "kafka": (KafkaBroker, Kafka),
        "redis": (RedisServer, Redis),
        "sqs": (MotoServer, SQS),
        "pubsub": (PubSubEmulator, PubSub),
    }
    for name in args.brokers.split(","):
        server_cls, broker_cls = servers[name]
        server = server_cls()
        server.start()
        broker = broker_cls(server)
        events = min(args.events, broker.max_events)
        try:
            rate = await forwarder_rate(broker, events, None)
            rows.append((name, "forwarder (memory queue)", rate))
            print(f"{name}: forwarder {rate:,.0f} events/s", file=sys.stderr)
            rate = await forwarder_rate(broker, events, workdir / f"{name}-spool.db")
            rows.append((name, "forwarder (spool file)", rate))
            print(f"{name}: forwarder with spool {rate:,.0f} events/s", file=sys.stderr)
            for count in (int(p) for p in args.processes.split(",")):
                rate = await end_to_end_rate(broker, events, count, workdir)
                rows.append((name, f"end to end, {count} consumer process(es)", rate))
                print(f"{name}: end to end with {count} consumer(s) {rate:,.0f} events/s", file=sys.stderr)
        finally:
            server.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--brokers", default="kafka,redis,sqs,pubsub")
    parser.add_argument("--json", action="store_true", help="one JSON object per figure on stdout")
    args = parser.parse_args()
    sys.path.insert(0, str(BENCH_DIR))
    from _common import Figure, emit, load_note, package_info

    rows = asyncio.run(run(args))
    meta = package_info()
    caps = ", ".join(f"{cls.name} {cls.max_events}" for cls in (SQS, PubSub))
    if args.json:
        meta = {
            **meta,
            "load": load_note(),
            "method": f"{args.events} events per figure ({caps} at most), counted at the far end",
        }
        figures = [
            Figure("consumers", f"{broker}_{what}", f"{broker}: {what}", rate, "events/s")
            for broker, what, rate in rows
        ]
        emit("bench_consumers", meta, figures, True)
        return
    print(f"\nfastapi-events {meta['version']}; {meta['stack']}")
    print(f"{args.events} events per figure ({caps} at most); load: {load_note()}\n")
    print("| broker | what | events/s |")
    print("|---|---|---:|")
    for broker, what, rate in rows:
        print(f"| {broker} | {what} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
