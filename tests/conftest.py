from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Server fixtures (moto_server, Pub/Sub emulator, Kafka-protocol broker, redis-server) live in tests/_servers.py.
pytest_plugins = ["tests._servers", "tests._postgres"]

# Fixtures defined in these modules start a real server, database or browser: a test using one (directly or
# through another fixture) is marked `servers`, so that `-m "not servers"` (the core suite run on the oldest
# supported releases and on Starlette alone) is an explicit selection, not a list someone must keep up to date.
# A module of such fixtures joins by being listed here; a test starting a server by hand marks itself.
SERVER_FIXTURE_MODULES = frozenset({"tests._servers", "tests._browser", "tests._postgres"})


# The Starlette-only run (`make test` builds a venv with everything but FastAPI) sets this: test modules that
# cannot even be imported without FastAPI are left out of collection, by name, in the summary; everything else must
# pass there. Without it a missing FastAPI is an ordinary collection error.
WITHOUT_FASTAPI_ENV = "FASTAPI_EVENTS_WITHOUT_FASTAPI"
_needs_fastapi: set[str] = set()


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(WITHOUT_FASTAPI_ENV) and importlib.util.find_spec("fastapi") is not None:
        raise pytest.UsageError(f"{WITHOUT_FASTAPI_ENV} is set but FastAPI is installed: not a Starlette-only run")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if not os.environ.get(WITHOUT_FASTAPI_ENV):
        return None
    if collection_path.is_dir() and (collection_path / "conftest.py").is_file():
        module_path = collection_path / "conftest.py"  # a package whose conftest needs FastAPI: all of it
    elif collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        module_path = collection_path
    else:
        return None
    module = ".".join(module_path.relative_to(config.rootpath).with_suffix("").parts)
    if module in _needs_fastapi:
        return True
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == "fastapi" or (exc.name or "").startswith("fastapi."):
            _needs_fastapi.add(module)
            return True
    except Exception:
        pass  # let collection report it
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _needs_fastapi:
        terminalreporter.write_line(
            f"Starlette-only run: {len(_needs_fastapi)} test modules or packages need FastAPI (they run in the other "
            f"environments): {', '.join(sorted(_needs_fastapi))}"
        )


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
