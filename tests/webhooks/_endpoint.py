"""A real webhook endpoint for tests: an ASGI app under uvicorn (in a thread) recording every POST it gets."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette

from fastapi_events import EventHandlerASGIMiddleware
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.typing import Receive, Scope, Send
from fastapi_events.webhooks import WebhookReceiver
from tests._servers import free_port, wait_for

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks spec's example secret


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class Recorder:
    """Records each request; answers with the scripted replies in order, then with ``default``."""

    def __init__(self, script: Iterable[Reply] = (), default: Reply | None = None) -> None:
        self.deliveries: list[Delivery] = []
        self.script = deque(script)
        self.default = default or Reply()
        self.in_flight = 0
        self.max_in_flight = 0

    def ids(self) -> list[str]:
        return [d.headers["webhook-id"] for d in self.deliveries]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.deliveries.append(Delivery(scope["path"], headers, body, time.time()))
        reply = self.script.popleft() if self.script else self.default
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(reply.delay)
        finally:
            self.in_flight -= 1
        raw = [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": raw})
        await send({"type": "http.response.body", "body": b""})


def receiving_app(receiver: WebhookReceiver, path: str = "/webhooks") -> tuple[Starlette, list[tuple[str, Any]]]:
    """A receiving app: the middleware, ``receiver`` mounted at ``path``, and the list its handler records
    every dispatched event in."""
    received: list[tuple[str, Any]] = []
    handler = LocalHandler()

    @handler.register(event_name="*")
    def record(event: tuple[str, Any]) -> None:
        received.append(event)

    app = Starlette()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[handler])
    app.mount(path, receiver.app)
    return app, received


class ThreadServer:
    """uvicorn serving ``app`` on 127.0.0.1 from a thread of this process."""

    def __init__(self, app: Any, port: int | None = None, **settings: Any) -> None:
        self.port = port or free_port()
        scheme = "https" if settings.get("ssl_certfile") else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        settings = {"log_level": "warning", "timeout_graceful_shutdown": 1, **settings}
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, **settings))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ThreadServer:
        self.thread.start()
        wait_for(lambda: self.server.started, 30, message="uvicorn to start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(15)


__all__ = ["SECRET", "Delivery", "Recorder", "Reply", "ThreadServer", "receiving_app"]
