"""The example-like app the inspector tests look at: local handlers (one failing on demand), an optional SQS
forwarder with a spool, and the inspector mounted at ``/_events`` (in process, or under uvicorn)."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel

from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.inspector import Authorize, Inspector
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.registry.payload_schema import registry
from fastapi_events.typing import Event


class OrderPlaced(BaseModel):
    __event_name__ = "order.placed"

    order_id: int
    lines: list[OrderLine]


class OrderLine(BaseModel):
    sku: str
    quantity: int


OrderPlaced.model_rebuild()


@registry.register(event_name="order.cancelled")
class OrderCancelled(BaseModel):
    order_id: int
    reason: str = ""


def audit_log() -> list[Event]:
    return AUDIT


AUDIT: list[Event] = []
TASKS: set[asyncio.Task[None]] = set()


def make_handler() -> LocalHandler:
    handler = LocalHandler()

    @handler.register(event_name="order.*")
    async def audit(event: Event, log: Annotated[list[Event], Depends(audit_log)]) -> None:
        log.append(event)

    @handler.register(event_name="payment.*")
    def charge(event: Event) -> None:
        if event[1].get("fail"):
            raise RuntimeError(f"card declined for {event[1]}")

    @handler.register(event_name="slow.*")
    def slow(event: Event) -> None:
        GATE.wait(10)

    return handler


#: ``slow.*`` handlers wait for this (a thread event: they run in worker threads).
GATE = threading.Event()


def make_app(
    *, local: LocalHandler | None = None, forwarder: Any = None, authorize: Authorize | None = None, **inspector: Any
) -> FastAPI:
    handlers: list[Any] = [local if local is not None else make_handler()]
    if forwarder is not None:
        handlers.append(forwarder)
    app = FastAPI(title="inspector test app", version="1.2.3")
    app.add_middleware(EventHandlerASGIMiddleware, handlers=handlers)
    app.state.inspector = Inspector(authorize=authorize, **inspector)
    app.mount("/_events", app.state.inspector.app)

    @app.post("/events/{name}")
    async def emit(name: str, request: Request) -> dict[str, int]:
        payloads: list[Any] = await request.json()
        for payload in payloads:
            dispatch(name, payload=payload)
        return {"dispatched": len(payloads)}

    @app.post("/generated/{count}")
    async def generated(count: int) -> dict[str, int]:
        for i in range(count):  # every event name distinct, as names built from data would be
            dispatch(f"generated.{i}", payload=None)
        return {"dispatched": count}

    @app.post("/later/{name}")
    async def later(name: str) -> dict[str, str]:
        async def dispatch_soon() -> None:
            await asyncio.sleep(0.01)
            dispatch(name, payload={"later": True})  # after the response: handled outside the request

        TASKS.add(asyncio.get_running_loop().create_task(dispatch_soon()))
        return {"scheduled": name}

    @app.post("/orders/{order_id}")
    async def place(order_id: int) -> dict[str, int]:
        dispatch(OrderPlaced(order_id=order_id, lines=[OrderLine(sku="tea", quantity=2)]))
        return {"order_id": order_id}

    return app


def app_from_env() -> FastAPI:
    """uvicorn --factory entry point; an SQS forwarder (with spool) when FE_QUEUE is set."""
    forwarder = None
    if os.environ.get("FE_QUEUE"):
        from fastapi_events.handlers.aws import SQSForwardHandler

        forwarder = SQSForwardHandler(
            os.environ["FE_QUEUE"],
            "us-east-1",
            spool_path=os.environ["FE_SPOOL"],
            relay_interval=0.2,
            endpoint_url=os.environ["FE_ENDPOINT"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
    return make_app(forwarder=forwarder)
