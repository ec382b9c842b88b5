"""A Starlette app without FastAPI: the middleware, LocalHandler and dependencies work without it."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers._dependencies import EventsDepends
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware


def test_starlette_app_with_framework_free_depends() -> None:
    handler = LocalHandler()
    seen: list[tuple[str, str]] = []

    def greeting() -> str:
        return "hi"

    @handler.register(event_name="order.*")
    async def on_order(event, word: str = EventsDepends(greeting)) -> None:  # type: ignore[assignment]
        seen.append((event[0], word))

    async def root(request: Request) -> PlainTextResponse:
        dispatch("order.placed", {"id": 1})
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/", root)],
        middleware=[Middleware(EventHandlerASGIMiddleware, handlers=[handler])],
    )
    with TestClient(app) as client:
        assert client.get("/").text == "ok"
    assert seen == [("order.placed", "hi")]
