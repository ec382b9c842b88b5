"""uvicorn ``--factory`` entry point for the Pub/Sub crash test, configured from ``FE_*`` variables."""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request

from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.gcp import GoogleCloudSimplePubSubHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware


def app_from_env() -> FastAPI:
    # PUBSUB_EMULATOR_HOST comes from the environment the test gives the process.
    handler = GoogleCloudSimplePubSubHandler(
        os.environ["FE_PROJECT"],
        os.environ["FE_TOPIC"],
        spool_path=os.environ["FE_SPOOL"],
        reconnect_max_delay=0.3,
    )
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[handler])

    @app.post("/events/{name}")
    async def emit(name: str, request: Request) -> dict[str, int]:
        payloads: list[Any] = await request.json()
        for payload in payloads:
            dispatch(name, payload=payload)
        return {"dispatched": len(payloads)}

    return app
