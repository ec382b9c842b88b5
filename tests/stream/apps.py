"""Apps under test: a Starlette app (no FastAPI needed) with an EventStream at /events; uvicorn in a thread.

``make_app`` is also a uvicorn ``--factory`` for subprocess tests; it reads ``STREAM_URL`` (Redis fan-out) and
``STREAM_HISTORY`` from the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Mount, Route

from fastapi_events.dispatcher import dispatch
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.stream import EventStream
from tests._servers import free_port, wait_for

# What the README shows: an EventSource (resumes by itself with Last-Event-ID) and a WebSocket.
PAGE = """<!doctype html><html><body><script>
window.opens = 0; window.seen = []; window.wsSeen = [];
const source = new EventSource("/events?events=order.*");
source.onopen = () => { window.opens += 1; };
source.addEventListener("order.placed", (e) => {
  window.seen.push({id: e.lastEventId, payload: JSON.parse(e.data)});
});
const ws = new WebSocket(`ws://${location.host}/events/ws?events=order.*`);
ws.onopen = () => { window.wsOpen = true; };
ws.onmessage = (e) => { window.wsSeen.push(JSON.parse(e.data)); };
</script></body></html>"""


def make_app(stream: EventStream | None = None, *handlers: Any) -> Starlette:
    if stream is None:
        history = int(os.environ.get("STREAM_HISTORY", "1000"))
        stream = EventStream(history, url=os.environ.get("STREAM_URL") or None, keepalive=1.0)

    async def dispatch_many(request: Request) -> JSONResponse:
        payloads = await request.json()
        for payload in payloads:
            dispatch(request.path_params["name"], payload)
        return JSONResponse({"dispatched": len(payloads)})

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

    async def slow_stream(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for number in range(3):
                dispatch("tick", {"n": number})
                yield b"tick %d\n" % number
                await asyncio.sleep(1.0)
            yield b"done\n"

        return StreamingResponse(body(), media_type="text/plain")

    app = Starlette(
        routes=[
            Route("/dispatch/{name}", dispatch_many, methods=["POST"]),
            Route("/page", page),
            Route("/slow-stream", slow_stream),
            Mount("/events", stream.app),
        ],
        middleware=[Middleware(EventHandlerASGIMiddleware, handlers=[*handlers, stream])],
    )
    app.state.stream = stream
    return app


class ThreadServer:
    """uvicorn serving ``app`` on a free 127.0.0.1 port in a background thread (its own event loop)."""

    def __init__(self, app: Any, **options: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=5,
            ws="websockets-sansio",
            **options,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), 20, message="uvicorn to start")
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        assert not self.thread.is_alive(), "uvicorn did not stop"


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    with ThreadServer(app) as server:
        yield server.url


__all__ = ["ThreadServer", "make_app", "serve"]
