from __future__ import annotations

from collections.abc import Iterator

import pytest

# Server fixtures (moto_server, Pub/Sub emulator, Kafka-protocol broker, redis-server) live in tests/_servers.py.
pytest_plugins = ["tests._servers", "tests._postgres"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fresh_local_handler() -> Iterator[None]:
    """Tests that register on the module-level ``local_handler`` (as README snippets do) leave it as they found it."""
    from fastapi_events.handlers.local import local_handler

    saved = list(local_handler._registrations)
    yield
    local_handler._registrations[:] = saved
    local_handler._matches.clear()


@pytest.fixture
def clean_schema_registry() -> Iterator[None]:
    from fastapi_events.registry.payload_schema import registry

    saved = dict(registry.data)
    yield
    registry.data.clear()
    registry.data.update(saved)
