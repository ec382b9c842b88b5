"""The mountable ASGI app: ``GET /`` (SSE) and ``WS /ws``; works under FastAPI and Starlette ``Mount``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..typing import Receive, Scope, Send
from ._sse import plain_response, serve_sse
from ._ws import serve_ws

if TYPE_CHECKING:
    from ._stream import EventStream


def _route_path(scope: Scope) -> str:
    # Starlette >= 0.33 keeps the full path and extends root_path on Mount; older versions strip the path.
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path.rstrip("/")


class StreamApp:
    def __init__(self, stream: EventStream) -> None:
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":  # served on its own rather than mounted
            await self._lifespan(receive, send)
            return
        path = _route_path(scope)
        if kind == "http":
            if path == "":
                await serve_sse(self.stream, scope, receive, send)
            else:
                await plain_response(send, 404, "Not Found\n")
        elif kind == "websocket":
            if path == "/ws":
                await serve_ws(self.stream, scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.stream.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stream.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


__all__ = ["StreamApp"]
