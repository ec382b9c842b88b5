"""Without a broker's SDK, its forwarder and its consumer fail at once with the ``pip install`` line to run."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# broker: (SDK module made unimportable, extra, 0.x-style import path, forwarder class, constructor args, consumer URL)
BROKERS = {
    "sqs": ("boto3", "aws", "fastapi_events.handlers.aws", "SQSForwardHandler", "('q', 'eu-central-1')", "sqs://q"),
    "pubsub": (
        "google.cloud.pubsub_v1",
        "google",
        "fastapi_events.handlers.gcp",
        "GoogleCloudSimplePubSubHandler",
        "('p', 't')",
        "pubsub://p/s",
    ),
    "kafka": (
        "confluent_kafka",
        "kafka",
        "fastapi_events.handlers.kafka",
        "KafkaForwardHandler",
        "('t', '127.0.0.1:9')",
        "kafka://127.0.0.1:9/t?group=g",
    ),
    "redis": (
        "redis",
        "redis",
        "fastapi_events.handlers.redis",
        "RedisStreamForwardHandler",
        "('s', 'redis://127.0.0.1:9/0')",
        "redis://127.0.0.1:9/0/s?group=g",
    ),
}

SCRIPT = """
import importlib, sys
sys.modules[{sdk!r}] = None  # what "not installed" looks like to an import
import fastapi_events
from fastapi_events.consumer import source_from_url

expected = 'pip install "fastapi-events[{extra}]"'

def must_fail(what, action):
    try:
        action()
    except ImportError as exc:
        assert expected in str(exc), (what, str(exc))
        print(what, "ok")
    else:
        raise SystemExit(what + ": no ImportError")

must_fail("0.x import path", lambda: importlib.import_module({path!r}))
must_fail("package", lambda: getattr(importlib.import_module("fastapi_events.brokers.{broker}"), {cls!r}))
must_fail("top-level", lambda: getattr(fastapi_events, {cls!r}))
must_fail("consumer", lambda: source_from_url({url!r}))
"""


@pytest.mark.parametrize("broker", BROKERS)
def test_a_missing_sdk_names_the_extra_everywhere(broker: str) -> None:
    sdk, extra, path, cls, _, url = BROKERS[broker]
    script = SCRIPT.format(sdk=sdk, extra=extra, path=path, cls=cls, url=url, broker=broker)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split("\n")[:4] == ["0.x import path ok", "package ok", "top-level ok", "consumer ok"]


@pytest.mark.parametrize("broker", BROKERS)
def test_the_consume_command_exits_with_the_install_line(broker: str) -> None:
    sdk, extra, _, _, _, url = BROKERS[broker]
    script = textwrap.dedent(f"""
        import sys
        sys.modules[{sdk!r}] = None
        from fastapi_events.cli import main
        sys.exit(main(["consume", {url!r}, "--handlers", "fastapi_events.handlers.local:local_handler"]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f'pip install "fastapi-events[{extra}]"' in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("broker", BROKERS)
def test_with_the_sdk_installed_the_forwarder_is_built(broker: str) -> None:
    _, _, path, cls, args, _ = BROKERS[broker]
    script = f"from {path} import {cls}; {cls}{args}; print('built')"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "built", result.stderr
