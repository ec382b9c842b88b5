"""``python -m fastapi_events consume``: graceful SIGTERM, argument errors."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from fastapi_events.cli import build_parser, main
from fastapi_events.codec import encode_event
from tests.consumer._processes import ROOT, start_consumer, stop, wait_consuming


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.servers
def test_sigterm_finishes_in_flight_handlers_commits_and_exits_0(redis_server: Any, tmp_path: Path) -> None:
    stream = f"term-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_server.url)
    for n in range(3):
        client.xadd(stream, {"body": encode_event(("item.created", {"n": n}))})
    out, log = tmp_path / "out.txt", tmp_path / "consumer.log"
    base = redis_server.url.rsplit("/", 1)[0]
    process = start_consumer(f"{base}/0/{stream}?group=g", out, log, delay=1.5)
    wait_consuming(log)
    deadline = time.monotonic() + 20
    while sum(line.startswith("start") for line in read_lines(out)) < 3:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    started = time.monotonic()
    code = stop(process)
    assert code == 0, log.read_text()
    assert time.monotonic() - started >= 1.0  # it waited for the handlers
    assert sorted(line.split()[2] for line in read_lines(out) if line.startswith("done")) == ["0", "1", "2"]
    assert client.xpending(stream, "g")["pending"] == 0  # acknowledged before exiting
    assert "SIGTERM: finishing in-flight messages" in log.read_text()


def test_help_lists_url_forms() -> None:
    parser = build_parser()
    help_text = parser._subparsers._group_actions[0].choices["consume"].format_help()  # type: ignore[union-attr]
    for form in ("kafka://", "redis://", "sqs://", "pubsub://", "--handlers", "--concurrency", "--handler-timeout"):
        assert form in help_text


@pytest.mark.fastapi  # tests.consumer.e2e_handlers uses fastapi.Depends
@pytest.mark.parametrize(
    ("url", "handlers", "message"),
    [
        ("nats://x/y", "tests.consumer.e2e_handlers:handler", "unsupported scheme"),
        ("redis://127.0.0.1:1/0/s", "tests.consumer.e2e_handlers", "expected module:attribute"),
        ("redis://127.0.0.1:1/0/s", "no_such_module_xyz:handler", "not found"),
        ("redis://127.0.0.1:1/0/s", "tests.consumer.e2e_handlers:nope", "'nope' not found"),
        ("redis://127.0.0.1:1/0/s", "tests.consumer.e2e_handlers:out_path", "expected a fastapi_events LocalHandler"),
        ("redis://127.0.0.1:1/0/s?colour=blue", "tests.consumer.e2e_handlers:handler", "unknown option(s) colour"),
    ],
)
def test_configuration_errors_exit_2_with_a_message(
    url: str, handlers: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["consume", url, "--handlers", handlers]) == 2
    assert message in caplog.text


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_handler_timeout_must_be_positive(value: str, caplog: pytest.LogCaptureFixture) -> None:
    argv = ["consume", "memory://b/t", "--handlers", "tests.consumer.e2e_handlers:handler", "--handler-timeout", value]
    assert main(argv) == 2
    assert "--handler-timeout must be > 0 seconds" in caplog.text


def test_module_entry_point_runs_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fastapi_events", "consume", "bogus://x", "--handlers", "a:b"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "module 'a' not found" in result.stderr  # handlers are loaded before the URL is looked at


@pytest.mark.servers
def test_custom_deserializer_reads_bodies_of_a_custom_serializer(redis_server: Any, tmp_path: Path) -> None:
    stream = f"custom-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_server.url)
    client.xadd(stream, {"body": b'{"kind": "item.imported", "n": 42}'})
    out, log = tmp_path / "out.txt", tmp_path / "consumer.log"
    base = redis_server.url.rsplit("/", 1)[0]
    extra = ["--deserializer", "tests.consumer.e2e_handlers:legacy_deserializer"]
    process = start_consumer(f"{base}/0/{stream}?group=g", out, log, extra=extra)
    try:
        deadline = time.monotonic() + 30
        while not any(line.startswith("done") for line in read_lines(out)):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        assert stop(process) == 0
    assert [line.split()[2] for line in read_lines(out) if line.startswith("done")] == ["42"]


@pytest.mark.servers
def test_kafka_consumer_sigterm_commits_what_it_finished(kafka_broker: Any, tmp_path: Path) -> None:
    from confluent_kafka import Consumer as RawConsumer
    from confluent_kafka import Producer, TopicPartition

    topic = f"term-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
    for n in range(3):
        producer.produce(topic, encode_event(("item.created", {"n": n})), partition=0)
    assert producer.flush(30) == 0
    out, log = tmp_path / "out.txt", tmp_path / "consumer.log"
    url = f"kafka://{kafka_broker.bootstrap_servers}/{topic}?group=g&session.timeout.ms=6000"
    process = start_consumer(url, out, log, delay=1.5)
    deadline = time.monotonic() + 60
    while sum(line.startswith("start") for line in read_lines(out)) < 3:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    assert stop(process) == 0, log.read_text()
    assert sorted(line.split()[2] for line in read_lines(out) if line.startswith("done")) == ["0", "1", "2"]
    reader = RawConsumer({"bootstrap.servers": kafka_broker.bootstrap_servers, "group.id": "g"})
    try:
        [committed] = reader.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        reader.close()
    assert committed.offset == 3  # all three finished during shutdown, then committed
