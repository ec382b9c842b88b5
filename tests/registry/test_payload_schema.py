from __future__ import annotations

import enum

import pydantic
import pytest

from fastapi_events.errors import MissingEventNameDuringRegistration
from fastapi_events.registry.base import BaseEventPayloadSchemaRegistry
from fastapi_events.registry.payload_schema import EventPayloadSchemaRegistry, registry


class Signals(enum.Enum):
    UP = "signal.up"


def test_register_forms_key_by_string_name() -> None:
    custom = EventPayloadSchemaRegistry()

    @custom.register(event_name=Signals.UP)
    class Up(pydantic.BaseModel):
        level: int

    @custom.register
    class Down(pydantic.BaseModel):
        __event_name__ = "signal.down"

    class Called(pydantic.BaseModel):
        pass

    assert custom.register(Called, event_name="signal.called") is Called
    assert dict(custom) == {"signal.up": Up, "signal.down": Down, "signal.called": Called}
    assert custom[Signals.UP] is Up
    assert Signals.UP in custom
    assert "signal.up" in custom
    assert custom.schema_for("nothing") is None


def test_registration_without_a_name_is_refused() -> None:
    custom = BaseEventPayloadSchemaRegistry()

    class Nameless(pydantic.BaseModel):
        x: int

    with pytest.raises(MissingEventNameDuringRegistration, match="Nameless"):
        custom.register(Nameless)
    assert len(custom) == 0


def test_default_registry_is_shared_instance() -> None:
    from fastapi_events import payload_schema_registry

    assert payload_schema_registry is registry
    assert isinstance(registry, BaseEventPayloadSchemaRegistry)
