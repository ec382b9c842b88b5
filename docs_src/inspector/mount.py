from fastapi import FastAPI
from starlette.requests import HTTPConnection

from fastapi_events.handlers.local import local_handler
from fastapi_events.inspector import Inspector
from fastapi_events.middleware import EventHandlerASGIMiddleware

OPERATOR_TOKENS = {"Bearer let-me-in"}


async def ops_only(connection: HTTPConnection) -> bool:
    return connection.headers.get("authorization") in OPERATOR_TOKENS


app = FastAPI()
app.add_middleware(EventHandlerASGIMiddleware, handlers=[local_handler])
app.mount("/_events", Inspector().app)  # loopback clients only
app.mount("/ops/events", Inspector(authorize=ops_only).app)  # whoever ops_only lets in
