from fastapi import FastAPI

from fastapi_events.handlers.local import local_handler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.typing import Event

failures: list[tuple[str, str, str]] = []


async def report(event: Event, handler_name: str, exc: BaseException) -> None:
    # e.g. sentry_sdk.capture_exception(exc)
    failures.append((str(event[0]), handler_name, str(exc)))


app = FastAPI()
app.add_middleware(EventHandlerASGIMiddleware, handlers=[local_handler], on_error=report)
