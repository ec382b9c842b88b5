"""``make example`` mounts the inspector: the example service's handlers and events show up in it."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

import httpx
import pytest
from starlette.routing import Mount

from fastapi_events import drain

pytestmark = pytest.mark.anyio


@pytest.fixture
def service(fresh_local_handler: None, clean_schema_registry: None) -> Iterator[ModuleType]:
    sys.modules.pop("examples.service", None)
    module = importlib.import_module("examples.service")  # registers its handlers on local_handler, once
    yield module
    sys.modules.pop("examples.service", None)
    (mount,) = [route for route in module.app.routes if isinstance(route, Mount) and route.path == "/_events"]
    mount.app.__self__.recorder.close()  # the hooks would otherwise stay for idle_after seconds


async def test_example_service_serves_the_inspector_to_loopback_only(service: ModuleType) -> None:
    loopback = httpx.ASGITransport(app=service.app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=loopback, base_url="http://127.0.0.1:8000") as client:
        assert (await client.get("/_events/api/events")).status_code == 200
        await client.post("/users", json={"email": "ada@example.com"})
        await drain(5)
        events = (await client.get("/_events/api/events")).json()["events"]
        handlers = (await client.get("/_events/api/handlers")).json()["local"]
    assert [e["name"] for e in events] == ["user.created", "mail.sent"]
    # (Apps of earlier tests may still be alive in this process: only the example's registrations count here.)
    assert {h["function"]: h["handled"] for h in handlers if h["function"].startswith("examples.")} == {
        "examples.service.audit": 1,
        "examples.service.send_welcome_mail": 1,
    }
    remote = httpx.ASGITransport(app=service.app, client=("192.0.2.7", 50000))
    async with httpx.AsyncClient(transport=remote, base_url="http://service.example") as client:
        assert (await client.get("/_events/")).status_code == 403
