"""Installing, re-installing and removing the hooks."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from fastapi_events import _hooks, otel
from fastapi_events.otel import _instrumentation as instrumentation

from .conftest import Telemetry


def test_reinstrumenting_with_the_same_providers_keeps_everything(telemetry: Telemetry) -> None:
    before = instrumentation.current()
    assert otel.instrument(telemetry.tracer_provider, telemetry.meter_provider)
    assert otel.auto_instrument()  # what every middleware start does
    assert instrumentation.current() is before
    assert len(_hooks.on_dispatch) == len(_hooks.on_handle) == 1


def test_another_provider_replaces_the_installation(telemetry: Telemetry) -> None:
    before = instrumentation.current()
    other = TracerProvider()
    assert otel.instrument(other, telemetry.meter_provider)
    after = instrumentation.current()
    assert after is not before
    assert after is not None
    assert after.providers == (other, telemetry.meter_provider)
    # The meter provider is the same: its instruments are reused, not registered twice.
    assert before is not None
    assert after.metrics is before.metrics
    assert len(_hooks.on_dispatch) == len(_hooks.on_consume) == 1


def test_explicit_installation_wins_over_automatic_activation(telemetry: Telemetry) -> None:
    # The global providers are the API's placeholders here; a starting middleware must not undo instrument().
    assert otel.auto_instrument()
    assert otel.is_instrumented()


def test_hook_helpers_are_one_shared_noop_when_off() -> None:
    otel.uninstrument()
    noop = _hooks.forward_batch("s", "d", [])
    assert _hooks.consume("s", "d", "id", "e", {}) is noop
    assert _hooks.observe_handler(("e", None), "h") is noop
    with noop:
        pass
    _hooks.dead_lettered("e", "where", "why")
    _hooks.consumer_lag("s", "d", "0", 1)
    assert not otel.is_instrumented()
