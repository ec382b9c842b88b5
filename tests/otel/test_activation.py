"""When instrumentation turns itself on, and that it stays off (no hook installed) otherwise.

Each case runs in a fresh interpreter: global providers can be set only once per process, and "OpenTelemetry
is not importable" needs an interpreter that never imported it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# Starlette, not FastAPI: recent FastAPI releases import OpenTelemetry themselves, which would defeat the
# "never imported" cases.
APP = """
import sys
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from fastapi_events import _hooks, dispatch
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware

handler = LocalHandler()
seen = []

@handler.register("*")
async def keep(event):
    seen.append(event)

async def root(request):
    dispatch("ping", payload={"n": 1})
    return PlainTextResponse("ok")

app = Starlette(routes=[Route("/", root)])
app.add_middleware(EventHandlerASGIMiddleware, handlers=[handler])

def hooks_installed():
    return bool(_hooks.on_dispatch or _hooks.on_handle)
"""

SDK = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
"""


def run(script: str, **env: str) -> str:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FASTAPI_EVENTS_"))}
    full_env.update(env)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_without_opentelemetry_nothing_is_imported_or_installed() -> None:
    out = run(
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # makes every 'import opentelemetry...' fail\n"
        + APP
        + """
with TestClient(app) as client:
    client.get("/")
assert not hooks_installed()
assert "fastapi_events.otel" not in sys.modules
assert type(seen[0]) is tuple

import pytest
from fastapi_events import otel
from fastapi_events.errors import ConfigurationError
assert otel.auto_instrument() is False and otel.is_instrumented() is False
assert otel.inject_headers(("a", 1)) == {} and otel.extract_context({"traceparent": "x"}) is None
with pytest.raises(ConfigurationError):
    otel.instrument()
print("ok")
"""
    )
    assert out == "ok"


def test_app_not_using_opentelemetry_does_not_import_it() -> None:
    # A Starlette-only install (FastAPI itself imports OpenTelemetry): nothing of ours may import it either.
    out = run(
        "import sys\nsys.modules['fastapi'] = None\n"
        + APP
        + """
with TestClient(app) as client:
    client.get("/")
print(sorted(m for m in sys.modules if m.startswith("opentelemetry") or m == "fastapi_events.otel"))
"""
    )
    assert out == "[]"


def test_api_without_sdk_provider_installs_nothing() -> None:
    out = run(
        "import opentelemetry.trace, opentelemetry.metrics\n"
        + APP
        + """
with TestClient(app) as client:
    client.get("/")
from fastapi_events import otel
assert otel.instrument() is False  # explicit call: still nothing without a real provider
assert not hooks_installed() and not otel.is_instrumented()
assert type(seen[0]) is tuple
print("ok")
"""
    )
    assert out == "ok"


def test_explicit_noop_provider_installs_nothing() -> None:
    out = run(
        APP
        + """
from opentelemetry import trace
trace.set_tracer_provider(trace.NoOpTracerProvider())
with TestClient(app) as client:
    client.get("/")
assert not hooks_installed()
print("ok")
"""
    )
    assert out == "ok"


@pytest.mark.parametrize("lifespan", [True, False], ids=["lifespan-startup", "first-request"])
def test_global_sdk_provider_activates_at_startup(lifespan: bool) -> None:
    out = run(
        APP
        + SDK
        + f"""
trace.set_tracer_provider(provider)  # set before the app starts, as opentelemetry-instrument does
client = TestClient(app)
if {lifespan}:
    with client:
        assert hooks_installed()
        client.get("/")
else:
    client.get("/")  # no lifespan: the first request activates, and its own events are traced
    assert hooks_installed()
print(sorted(s.name for s in exporter.get_finished_spans()))
print(type(seen[0]).__name__)
"""
    )
    assert out.splitlines() == [
        "['process ping __main__.keep', 'send ping']",
        "TracedEvent",
    ]


def test_automatic_activation_can_be_disabled() -> None:
    out = run(
        APP
        + SDK
        + """
trace.set_tracer_provider(provider)
with TestClient(app) as client:
    client.get("/")
assert not hooks_installed()
from fastapi_events import otel
assert otel.instrument() is True  # an explicit call still works
print("ok")
""",
        FASTAPI_EVENTS_OTEL="0",
    )
    assert out == "ok"


def test_provider_configured_after_startup_needs_instrument() -> None:
    out = run(
        APP
        + SDK
        + """
with TestClient(app) as client:
    client.get("/")
    assert not hooks_installed()
    trace.set_tracer_provider(provider)
    from fastapi_events import otel
    assert otel.instrument() is True
    client.get("/")
print(sorted(s.name for s in exporter.get_finished_spans()))
"""
    )
    assert out == "['process ping __main__.keep', 'send ping']"
