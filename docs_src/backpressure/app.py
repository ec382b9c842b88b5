"""A forwarder whose in-memory queue pushes back on requests when it is full (run: uvicorn ... --limit-concurrency)."""

from fastapi import FastAPI

from fastapi_events import EventHandlerASGIMiddleware, dispatch
from fastapi_events.delivery import OutboundMessage
from fastapi_events.handlers.redis import RedisStreamForwardHandler

given_up: list[str] = []


def on_dead_letter(message: OutboundMessage, reason: str) -> None:
    # Called for each event dropped during an outage (no room, no spool), as for every dead letter.
    given_up.append(message.id)


forwarder = RedisStreamForwardHandler(
    "orders",
    "redis://127.0.0.1:6379/0",
    max_queue_size=10_000,  # where backpressure starts, not where events are discarded
    on_dead_letter=on_dead_letter,
)

app = FastAPI()
app.add_middleware(EventHandlerASGIMiddleware, handlers=[forwarder])


@app.post("/orders")
async def place_order() -> dict[str, str]:
    dispatch("order.placed", {"order_id": 1})
    return {"status": "placed"}
