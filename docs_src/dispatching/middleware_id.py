import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.local import local_handler
from fastapi_events.middleware import EventHandlerASGIMiddleware

NIGHTLY = 1  # any int unique among the app's middlewares


def nightly_report() -> None:
    # Outside any request (a scheduler, another thread): name the middleware that handles the event.
    dispatch("nightly.report", {"rows": 10}, middleware_id=NIGHTLY)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    dispatch("app.started")  # code run from the lifespan needs no middleware_id
    await asyncio.to_thread(nightly_report)
    yield


app = FastAPI(lifespan=lifespan)
app.add_middleware(EventHandlerASGIMiddleware, handlers=[local_handler], middleware_id=NIGHTLY)
