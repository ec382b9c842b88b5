"""The FastAPI app used by the end-to-end forwarder tests (in process, and under uvicorn in a subprocess)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import FastAPI, Request

from fastapi_events.delivery import ForwardHandler
from fastapi_events.dispatcher import dispatch
from fastapi_events.middleware import EventHandlerASGIMiddleware


class Unencodable:
    """A payload value the JSON codec refuses."""


def make_app(handler: ForwardHandler) -> FastAPI:
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[handler])

    @app.post("/events/{name}")
    async def emit(name: str, request: Request, delay: float = 0.0) -> dict[str, int]:
        payloads: list[Any] = await request.json()
        for payload in payloads:
            dispatch(name, payload=payload)
        await asyncio.sleep(delay)  # a slow request: still running when the server is told to stop
        return {"dispatched": len(payloads)}

    @app.post("/unencodable")
    async def unencodable() -> dict[str, int]:
        dispatch("bad.event", payload={"value": Unencodable()})
        return {"dispatched": 1}

    @app.post("/oversize")
    async def oversize() -> dict[str, int]:
        dispatch("big.event", payload={"blob": "x" * (300 * 1024)})
        return {"dispatched": 1}

    @app.get("/stats")
    async def stats() -> dict[str, int]:
        s = handler.stats
        return {name: getattr(s, name) for name in s.__slots__}

    return app


def app_from_env() -> FastAPI:
    """uvicorn --factory entry point: SQS forwarder configured from FE_* environment variables (``FE_SPOOL`` empty:
    no spool)."""
    from fastapi_events.handlers.aws import SQSForwardHandler

    handler = SQSForwardHandler(
        os.environ["FE_QUEUE"],
        "us-east-1",
        spool_path=os.environ["FE_SPOOL"] or None,
        reconnect_max_delay=0.3,
        endpoint_url=os.environ["FE_ENDPOINT"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return make_app(handler)
