"""Forwarders under load: uvicorn + ``wrk``, a route dispatching 10 events per request to a forwarder with default
options against a healthy local broker, next to the same route calling the broker's SDK by hand.

Per broker (Redis Streams on ``redis-server``, Kafka on tansu, SQS on ``moto_server``, Pub/Sub on Google's
emulator; all started as the test suite starts them, ``tests/_servers.py``), three uvicorn servers (1 worker,
httptools + uvloop, no access log), each with a destination of its own:

* ``none``:  the same app whose route dispatches nothing (the baseline);
* ``ours``:  ``EventHandlerASGIMiddleware`` + the broker's forwarder, default options; the route ``dispatch``-es 10;
* ``hand``:  no events package: the route encodes its 10 payloads (``json.dumps``) and calls the SDK itself - a
  ``redis.asyncio`` pipeline of 10 ``XADD``s awaited; 10 ``confluent_kafka`` ``produce()`` + ``poll(0)``; one SQS
  ``send_message_batch`` of 10 through boto3 in a worker thread; 10 Pub/Sub ``publish()`` calls (futures not
  awaited in the route). ``--hand-prebuilt``: bodies encoded once at start-up instead, as runs before 1.2 did.

A round loads the three servers of a broker in random order (``wrk -t1 -c20``, 5 s after a 1 s warm-up; Pub/Sub
``-c8`` 2 s after a 1 s warm-up, whose emulator works off a backlog slowly; SQS a paced load of 10 requests/s for
8 s after 1 s, because moto_server slows down as its queue grows - see ``LOAD``; ``--duration``/``--warmup``/
``--connections``/``--rate`` set one load for every broker). After
each run the script waits until the server holds nothing more and counts at the broker (``XLEN``, the topic's
messages read back, the queue's message count, messages pulled from a subscription) what arrived against what the
server dispatched: **lost** = dispatched - arrived. **CPU per event**: the server process's CPU time (``/proc``)
during the run (with a paced load: until the server holds nothing more) over the events dispatched during the run.
**Requests/s** as a share of the ``none`` server's in the same round (a paced load sets it: not a figure).
Printed: medians over rounds, ``--json``: one JSON figure per line (``benchmarks/_common.py``).

    PYTHONPATH=. python benchmarks/bench_forward_load.py [--brokers redis,kafka,sqs,pubsub] [--rounds 3]

Needs ``wrk``; ``--serve`` is the server side (used by the script itself).
"""

# No ``from __future__ import annotations``: FastAPI must see the endpoints' parameter types.
import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(REPO_ROOT)]

from _common import Figure, emit, load_note, median, package_info  # noqa: E402
from bench_uvicorn import free_port, get_json, process_cpu_seconds, stop_process, wait_answering, wrk  # noqa: E402

EVENTS_PER_REQUEST = 10
MODES = ("none", "ours", "hand")
BROKERS = ("redis", "kafka", "sqs", "pubsub")
# Goals: CPU per event ours / by hand (at most), requests/s share ours / by hand (at least).
CPU_TARGET = {"redis": 1.0, "kafka": 1.5, "sqs": 1.5, "pubsub": 1.5}
RPS_TARGET = {"redis": 1.0, "kafka": 1.0}
# wrk load per broker unless given on the command line. moto_server and the Pub/Sub emulator take minutes to work
# off a backlog of tens of thousands of events, and every event is counted at the broker before the next run: a
# shorter, lighter load keeps those rows to a few minutes. The table states the load of each row.
LOAD = {
    "redis": {"duration": 5.0, "warmup": 1.0, "connections": 20},
    "kafka": {"duration": 5.0, "warmup": 1.0, "connections": 20},
    # moto_server slows down as a queue grows (about 160 events/s into an empty queue, 46 at 3 000 messages on this
    # machine): a closed loop would only measure moto's backlog. SQS gets a paced (open-loop) load below that.
    "sqs": {"duration": 8.0, "warmup": 1.0, "connections": 4, "rate": 10.0},
    "pubsub": {"duration": 2.0, "warmup": 1.0, "connections": 8},
}


def payload(n: int) -> dict[str, Any]:
    return {"order_id": n, "user": "u-1", "total": 42.5}


# ----------------------------------------------------------------------------------------------------
# server side


def build_app(broker: str, mode: str, dest: str, conn: dict[str, str]) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response

    from fastapi_events.dispatcher import dispatch
    from fastapi_events.middleware import EventHandlerASGIMiddleware

    app = FastAPI()
    counts = {"dispatched": 0}
    forwarder: Any = None
    hand: Any = None
    settle: Any = None

    if mode == "ours":
        forwarder = make_forwarder(broker, dest, conn)
        app.add_middleware(EventHandlerASGIMiddleware, handlers=[forwarder])

        @app.get("/events")
        async def ours() -> Response:
            for n in range(EVENTS_PER_REQUEST):
                dispatch("order.placed", payload=payload(n))
            counts["dispatched"] += EVENTS_PER_REQUEST
            return Response(b"ok")

    elif mode == "hand":
        hand, settle = make_hand(broker, dest, conn)

        @app.get("/events")
        async def by_hand() -> Response:
            counts["dispatched"] += EVENTS_PER_REQUEST
            await hand()
            return Response(b"ok")

    else:

        @app.get("/events")
        async def nothing() -> Response:
            return Response(b"ok")

    @app.get("/stats")
    async def stats() -> JSONResponse:
        held = 0
        if forwarder is not None:
            s = forwarder.stats
            held = s.queued + s.waiting
            counts["dropped"] = s.dropped
        elif settle is not None:
            held = await settle()
        return JSONResponse({**counts, "held": held})

    return app


def make_forwarder(broker: str, dest: str, conn: dict[str, str]) -> Any:
    if broker == "redis":
        from fastapi_events.handlers.redis import RedisStreamForwardHandler

        return RedisStreamForwardHandler(dest, conn["url"])
    if broker == "kafka":
        from fastapi_events import KafkaForwardHandler

        return KafkaForwardHandler(dest, conn["bootstrap"])
    if broker == "sqs":
        from fastapi_events import SQSForwardHandler

        return SQSForwardHandler(dest, conn["region"], **json.loads(conn["client"]))
    from fastapi_events import GoogleCloudSimplePubSubHandler

    return GoogleCloudSimplePubSubHandler(conn["project"], dest)


def make_hand(broker: str, dest: str, conn: dict[str, str]) -> tuple[Any, Any]:
    """The route's hand-written SDK call, and ``settle()`` -> messages the SDK still holds (after pushing them).

    The route encodes its 10 payloads (``json.dumps``) on every request, as a route sending what it was given must;
    ``--hand-prebuilt`` sends 10 bodies encoded once at start-up instead (the baseline of the runs before 1.2).
    """
    prebuilt = [json.dumps(["order.placed", payload(n)]).encode() for n in range(EVENTS_PER_REQUEST)]

    def encoded() -> list[bytes]:
        return [json.dumps(["order.placed", payload(n)]).encode() for n in range(EVENTS_PER_REQUEST)]

    bodies: Any = (lambda: prebuilt) if os.environ.get("BENCH_HAND_PREBUILT") == "1" else encoded

    async def nothing_held() -> int:
        return 0

    if broker == "redis":
        import redis.asyncio as aioredis

        client = aioredis.from_url(conn["url"])

        async def xadd() -> None:
            async with client.pipeline(transaction=False) as pipe:
                for body in bodies():
                    pipe.xadd(dest, {"body": body})
                await pipe.execute()

        return xadd, nothing_held
    if broker == "kafka":
        from confluent_kafka import Producer

        config = {"bootstrap.servers": conn["bootstrap"], "acks": "all", "enable.idempotence": True}
        producer = Producer({**config, "linger.ms": 5})

        async def produce() -> None:
            for body in bodies():
                producer.produce(dest, body)
            producer.poll(0)

        async def flush() -> int:
            return int(await asyncio.to_thread(producer.flush, 1.0))

        return produce, flush
    if broker == "sqs":
        import boto3

        sqs = boto3.client("sqs", region_name=conn["region"], **json.loads(conn["client"]))
        async def send() -> None:
            entries = [{"Id": str(i), "MessageBody": body.decode()} for i, body in enumerate(bodies())]
            await asyncio.to_thread(sqs.send_message_batch, QueueUrl=dest, Entries=entries)

        return send, nothing_held
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(conn["project"], dest)
    futures: set[Any] = set()

    async def publish() -> None:
        for body in bodies():
            future = publisher.publish(topic, body)
            futures.add(future)
            future.add_done_callback(futures.discard)

    async def held() -> int:
        return len(futures)

    return publish, held


def serve(spec: str, port: int) -> None:
    import uvicorn

    broker, mode, dest = spec.split(":", 2)
    conn = json.loads(os.environ["BENCH_CONN"])
    app = build_app(broker, mode, dest, conn)
    uvicorn.run(
        app, host="127.0.0.1", port=port, http="httptools", loop="uvloop", log_level="warning", access_log=False
    )


# ----------------------------------------------------------------------------------------------------
# driver side: brokers (started as the tests start them) and what arrived there


class Broker:
    name = ""

    def __init__(self) -> None:
        self.server: Any = None

    def conn(self) -> dict[str, str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def create(self, dest: str) -> str:
        """Create a destination; returns what the app is given (queue URL for SQS)."""
        return dest

    def arrived(self, dest: str) -> int:
        raise NotImplementedError

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()


class RedisBroker(Broker):
    name = "redis"

    def __init__(self) -> None:
        import redis

        from tests._servers import RedisServer

        self.server = RedisServer().start()
        self.client = redis.Redis.from_url(self.server.url)

    def conn(self) -> dict[str, str]:
        return {"url": self.server.url}

    def arrived(self, dest: str) -> int:
        return int(self.client.xlen(dest))


class KafkaBroker(Broker):
    name = "kafka"

    def __init__(self) -> None:
        from tests._servers import KafkaBroker as Tansu

        self.server = Tansu().start()
        self.readers: dict[str, Any] = {}
        self.counted: dict[str, int] = {}

    def conn(self) -> dict[str, str]:
        return {"bootstrap": self.server.bootstrap_servers}

    def create(self, dest: str) -> str:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.server.bootstrap_servers})
        for future in admin.create_topics([NewTopic(dest, num_partitions=1, replication_factor=1)]).values():
            future.result(30)
        bootstrap = self.server.bootstrap_servers
        reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{dest}", "enable.auto.commit": False})
        reader.assign([TopicPartition(dest, 0, OFFSET_BEGINNING)])
        self.readers[dest] = reader
        return dest

    def arrived(self, dest: str) -> int:
        # Read, not offsets: tansu's end offsets do not count records one by one.
        reader, empty = self.readers[dest], 0
        while empty < 3:
            messages = [m for m in reader.consume(1000, 0.3) if m.error() is None]
            empty = 0 if messages else empty + 1
            self.counted[dest] = self.counted.get(dest, 0) + len(messages)
        return self.counted.get(dest, 0)

    def stop(self) -> None:
        for reader in self.readers.values():
            reader.close()
        super().stop()


class SQSBroker(Broker):
    name = "sqs"

    def __init__(self) -> None:
        import boto3

        from tests._servers import MotoServer

        self.server = MotoServer().start()
        self.client = boto3.client("sqs", **self.server.client_kwargs)

    def conn(self) -> dict[str, str]:
        kwargs = dict(self.server.client_kwargs)
        region = kwargs.pop("region_name")
        return {"region": region, "client": json.dumps(kwargs)}

    def create(self, dest: str) -> str:
        return str(self.client.create_queue(QueueName=dest)["QueueUrl"])

    def arrived(self, dest: str) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.client.get_queue_attributes(QueueUrl=dest, AttributeNames=names)["Attributes"]
        return sum(int(attributes[name]) for name in names)


class PubSubBroker(Broker):
    name = "pubsub"

    def __init__(self) -> None:
        from tests._servers import PubSubEmulator

        self.server = PubSubEmulator().start()
        os.environ.update(self.server.env)  # this driver process only: its clients talk to the emulator
        from google.cloud import pubsub_v1

        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        self.counted: dict[str, int] = {}

    def conn(self) -> dict[str, str]:
        return {"project": self.server.project}

    def env(self) -> dict[str, str]:
        return dict(self.server.env)

    def create(self, dest: str) -> str:
        topic = self.publisher.create_topic(name=self.publisher.topic_path(self.server.project, dest)).name
        subscription = self.subscriber.subscription_path(self.server.project, dest)
        self.subscriber.create_subscription(name=subscription, topic=topic)
        return dest

    def arrived(self, dest: str) -> int:
        # Pull (and acknowledge) what is there; the count accumulates over the destination's runs.
        subscription = self.subscriber.subscription_path(self.server.project, dest)
        empty = 0
        while empty < 2:
            response = self.subscriber.pull(subscription=subscription, max_messages=1000, timeout=10)
            ids = [m.ack_id for m in response.received_messages]
            if not ids:
                empty += 1
                continue
            empty = 0
            self.counted[dest] = self.counted.get(dest, 0) + len(ids)
            self.subscriber.acknowledge(subscription=subscription, ack_ids=ids)
        return self.counted.get(dest, 0)


BROKER_CLASSES = {cls.name: cls for cls in (RedisBroker, KafkaBroker, SQSBroker, PubSubBroker)}


class Server:
    def __init__(self, broker: Broker, mode: str, hand_prebuilt: bool = False) -> None:
        self.broker, self.mode = broker, mode
        self.dest = broker.create(f"bench-{mode}-{uuid.uuid4().hex[:8]}")
        self.port = free_port()
        env = {**os.environ, **broker.env(), "BENCH_CONN": json.dumps(broker.conn())}
        env["BENCH_HAND_PREBUILT"] = "1" if hand_prebuilt else "0"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
        spec = f"{broker.name}:{mode}:{self.dest}"
        cmd = [sys.executable, __file__, "--serve", spec, "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, cwd=BENCH_DIR, env=env)
        wait_answering(self.proc, f"http://127.0.0.1:{self.port}/stats", f"uvicorn {spec}")

    def stats(self) -> dict[str, int]:
        result: dict[str, int] = get_json(f"http://127.0.0.1:{self.port}/stats", timeout=60.0)
        return result

    def arrived(self) -> int:
        return self.broker.arrived(self.dest) if self.mode != "none" else 0

    def load(self, args: argparse.Namespace) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/events"
        start = self.stats()
        arrived_before = self.arrived()
        rate = getattr(args, "rate", None)
        if args.warmup > 0:
            if rate:
                paced(url, rate, args.warmup)
                self.settle()
            else:
                wrk(url, args.threads, args.connections, args.warmup)
        before = self.stats()
        cpu_before = process_cpu_seconds(self.proc.pid)
        result = paced(url, rate, args.duration) if rate else wrk(url, args.threads, args.connections, args.duration)
        if rate:
            # At a paced rate the forwarder's sender works after the answers went out: its CPU counts until the
            # server holds nothing more, for ours and by hand alike.
            self.settle()
        cpu = process_cpu_seconds(self.proc.pid) - cpu_before
        after = self.stats()
        if result["errors"][0]:
            raise RuntimeError(f"{self.broker.name}/{self.mode}: {result['errors'][0]} non-2xx responses")
        events = after["dispatched"] - before["dispatched"]
        result["cpu_us_per_event"] = cpu * 1e6 / events if events else 0.0
        after = self.settle()
        dispatched = after["dispatched"] - start["dispatched"]
        arrived, last_change = self.arrived() - arrived_before, time.monotonic()
        while arrived < dispatched and time.monotonic() - last_change < 5:
            time.sleep(0.2)
            now = self.arrived() - arrived_before
            if now != arrived:
                arrived, last_change = now, time.monotonic()
        result["lost"] = dispatched - arrived
        result["dispatched"] = dispatched
        return result

    def settle(self) -> dict[str, int]:
        """Wait until the server holds nothing more, as long as it makes progress (moto works off a backlog
        slowly); its stats then."""
        after = self.stats()
        progress_at, held = time.monotonic(), after["held"]
        while after["held"] and time.monotonic() - progress_at < 30:
            time.sleep(0.1)
            after = self.stats()
            if after["held"] < held:
                progress_at, held = time.monotonic(), after["held"]
        if after["held"]:
            log(f"{self.broker.name}/{self.mode}: {after['held']} event(s) still held after 30 s without progress")
        return after

    def stop(self) -> None:
        stop_process(self.proc)


def paced(url: str, rate: float, seconds: float) -> dict[str, Any]:
    """Open loop: a request every ``1 / rate`` s for ``seconds``, whatever the answers take; wrk-like result."""
    import httpx

    async def run() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        count = max(1, round(rate * seconds))
        async with httpx.AsyncClient(timeout=120.0, limits=httpx.Limits(max_connections=None)) as client:
            began = loop.time()
            tasks = []
            for i in range(count):
                await asyncio.sleep(max(0.0, began + i / rate - loop.time()))
                tasks.append(asyncio.ensure_future(client.get(url)))
            responses = await asyncio.gather(*tasks)
            elapsed = loop.time() - began
        bad = sum(response.status_code != 200 for response in responses)
        return {"rps": count / elapsed, "requests": count, "errors": (bad, "")}

    return asyncio.run(run())


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def broker_load(name: str, args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the broker's own wrk load (:data:`LOAD`) wherever the command line left it unset."""
    given = vars(args)
    return argparse.Namespace(**{**given, **{k: v for k, v in LOAD[name].items() if given[k] is None}})


def run_broker(name: str, args: argparse.Namespace, rng: random.Random) -> list[Figure]:
    args = broker_load(name, args)
    load = f"wrk -t{args.threads} -c{args.connections}, {args.duration:g} s"
    if args.rate:
        load = f"paced {args.rate:g} req/s, {args.duration:g} s"
    broker = BROKER_CLASSES[name]()
    servers: dict[str, Server] = {}
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    try:
        servers = {mode: Server(broker, mode, args.hand_prebuilt) for mode in MODES}
        for round_no in range(args.rounds):
            order = list(MODES)
            rng.shuffle(order)
            for mode in order:
                runs[mode].append(servers[mode].load(args))
            r = {mode: runs[mode][-1] for mode in MODES}
            log(
                f"{name} round {round_no + 1}: none {r['none']['rps']:.0f} req/s; "
                + "; ".join(
                    f"{m} {r[m]['rps']:.0f} req/s, {r[m]['cpu_us_per_event']:.1f} µs CPU/event, lost {r[m]['lost']}"
                    for m in ("ours", "hand")
                )
            )
    finally:
        for server in servers.values():
            server.stop()
        broker.stop()
    share = {m: [100.0 * a["rps"] / b["rps"] for a, b in zip(runs[m], runs["none"], strict=True)] for m in MODES}
    cpu_ratio = [
        a["cpu_us_per_event"] / b["cpu_us_per_event"] for a, b in zip(runs["ours"], runs["hand"], strict=True)
    ]
    rps_ratio = [a / b for a, b in zip(share["ours"], share["hand"], strict=True)]
    lost = [run["lost"] for run in runs["ours"]]
    detail = {
        "rounds": args.rounds,
        "connections": args.connections,
        "duration": args.duration,
        "load": load,
        "hand_bodies": "encoded once" if args.hand_prebuilt else "encoded per request",
    }
    figures = [
        Figure("forward_load", f"{name}_lost", f"{name}: events lost, ours (max over rounds; {load})", float(max(lost)),
               "events", 0.0, "<=", {**detail, "per_round": lost,
                                     "dispatched": [run["dispatched"] for run in runs["ours"]],
                                     "hand_lost": [run["lost"] for run in runs["hand"]]}),
        Figure("forward_load", f"{name}_cpu_ours", f"{name}: CPU per event, ours", median(
            [run["cpu_us_per_event"] for run in runs["ours"]]), "µs", extra=detail),
        Figure("forward_load", f"{name}_cpu_hand", f"{name}: CPU per event, by hand", median(
            [run["cpu_us_per_event"] for run in runs["hand"]]), "µs", extra=detail),
        Figure("forward_load", f"{name}_cpu_ratio", f"{name}: CPU per event, ours / by hand ({load})",
               median(cpu_ratio), "x", CPU_TARGET[name], "<=", detail),
    ]
    if args.rate:  # the pace sets the requests/s: no figure to report
        return figures
    return [
        *figures,
        Figure("forward_load", f"{name}_rps_ours", f"{name}: req/s, ours, % of no events", median(share["ours"]),
               "%", extra=detail),
        Figure("forward_load", f"{name}_rps_hand", f"{name}: req/s, by hand, % of no events", median(share["hand"]),
               "%", extra=detail),
        Figure("forward_load", f"{name}_rps_ratio", f"{name}: req/s share, ours / by hand", median(rps_ratio), "x",
               RPS_TARGET.get(name), ">=" if name in RPS_TARGET else None, detail),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brokers", default=",".join(BROKERS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, help="seconds of wrk load per run (default: per broker, LOAD)")
    parser.add_argument("--warmup", type=float, help="whole seconds of wrk warm-up per run (default: per broker)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--connections", type=int, help="wrk connections (default: per broker)")
    parser.add_argument("--rate", type=float, help="paced load, requests/s, instead of wrk (default: SQS 10; 0: wrk)")
    parser.add_argument(
        "--hand-prebuilt",
        action="store_true",
        help="the hand-written route sends bodies encoded once at start-up (default: it encodes per request)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return
    # Killed (a timeout, Ctrl-C in a pipeline): stop the servers and brokers this run started, in the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found (Debian: apt-get install -y wrk)")
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    unknown = set(brokers) - set(BROKERS)
    if unknown:
        raise SystemExit(f"unknown broker(s): {', '.join(sorted(unknown))}; choose from {', '.join(BROKERS)}")

    rng = random.Random(1)
    figures: list[Figure] = []
    for name in brokers:
        figures += run_broker(name, args, rng)
    meta = {**package_info(), "load": load_note(), "method": f"wrk -t{args.threads}, per broker: {LOAD} unless given"}
    emit("forwarders under load (ours vs the SDK by hand)", meta, figures, args.json)


if __name__ == "__main__":
    main()
