"""A Starlette app without FastAPI installed (import blocked) streams events the same way."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import asyncio
    import sys

    sys.modules["fastapi"] = None  # as if FastAPI were not installed
    import httpx
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    from fastapi_events.dispatcher import dispatch
    from fastapi_events.middleware import EventHandlerASGIMiddleware
    from fastapi_events.stream import EventStream

    stream = EventStream()

    async def order(request):
        dispatch("order.placed", {"id": 1})
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/order", order, methods=["POST"]), Mount("/events", stream.app)],
        middleware=[Middleware(EventHandlerASGIMiddleware, handlers=[stream])],
    )

    async def main():
        async with stream.subscribe("order.*") as subscription:
            transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 1234))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                assert (await client.post("/order")).text == "ok"
                refused = await client.get("/events/")
            event = await asyncio.wait_for(anext(subscription), 5)
        assert (event.id, event.name, event.payload) == ("1", "order.placed", {"id": 1}), event
        assert refused.status_code == 403 and "loopback" in refused.text, refused.text
        print("ok")

    asyncio.run(main())
    """
)


def test_stream_in_a_starlette_app_without_fastapi() -> None:
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=root, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"
