from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.typing import Event

handlers = LocalHandler()  # a registry of its own; `local_handler` is the shared default one
viewed: list[str] = []


@handlers.register(event_name="page.viewed")
def count_view(event: Event) -> None:  # sync handlers run in a worker thread
    viewed.append(event[1]["path"])


async def home(request: Request) -> JSONResponse:
    dispatch("page.viewed", {"path": request.url.path})
    return JSONResponse({"hello": "world"})


app = Starlette(
    routes=[Route("/", home)],
    middleware=[Middleware(EventHandlerASGIMiddleware, handlers=[handlers])],
)
