"""The receiving app: verified deliveries become events of this app, handled by its own handlers."""

import os

from fastapi import FastAPI

from fastapi_events.handlers.local import LocalHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.typing import Event
from fastapi_events.webhooks import WebhookReceiver

handler = LocalHandler()
paid_orders: list[int] = []


@handler.register(event_name="order.paid")
async def on_order_paid(event: Event) -> None:
    _, payload = event
    paid_orders.append(payload["order_id"])


receiver = WebhookReceiver(secret=os.environ["WEBHOOK_SECRET"], tolerance=300)

app = FastAPI()
app.add_middleware(EventHandlerASGIMiddleware, handlers=[handler])
app.mount("/webhooks", receiver.app)  # POST /webhooks (or /webhooks/): 204 and dispatch("order.paid", data)
