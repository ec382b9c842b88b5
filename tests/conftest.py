from __future__ import annotations

from collections.abc import Iterator

import pytest

# Server fixtures (moto_server, Pub/Sub emulator, Kafka-protocol broker, redis-server) live in tests/_servers.py.
pytest_plugins = ["tests._servers", "tests._postgres"]

# Fixtures defined in these modules start a real server, database or browser: a test using one (directly or
# through another fixture) is marked `servers`, so that `-m "not servers"` (the core suite run on the oldest
# supported releases and on Starlette alone) is an explicit selection, not a list someone must keep up to date.
# A module of such fixtures joins by being listed here; a test starting a server by hand marks itself.
SERVER_FIXTURE_MODULES = frozenset({"tests._servers", "tests._browser", "tests._postgres"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtureinfo = getattr(item, "_fixtureinfo", None)
        if fixtureinfo is None or item.get_closest_marker("servers"):
            continue
        for name in fixtureinfo.names_closure:
            definitions = fixtureinfo.name2fixturedefs.get(name, ())
            if any(getattr(d.func, "__module__", "") in SERVER_FIXTURE_MODULES for d in definitions):
                item.add_marker(pytest.mark.servers)
                break


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
