"""The sending app: every order event is POSTed, signed, to the customer's endpoint."""

import os

from fastapi import FastAPI

from fastapi_events.dispatcher import dispatch
from fastapi_events.middleware import EventHandlerASGIMiddleware
from fastapi_events.webhooks import WebhookEndpoint, WebhookForwardHandler

# Endpoints on your own network (or on this machine, as in the tests) must be allowed explicitly.
PRIVATE_OK = os.environ.get("WEBHOOK_ALLOW_PRIVATE") == "1"
SPOOL = os.environ.get("WEBHOOK_SPOOL", "webhooks.db")

# One WebhookEndpoint per subscription; the secret is the one you gave the endpoint's owner
# (fastapi_events.webhooks.new_webhook_secret() makes one).
customer = WebhookEndpoint(
    url=os.environ["WEBHOOK_URL"],  # e.g. "https://hooks.example.com/in"
    secret=os.environ["WEBHOOK_SECRET"],
    events=("order.*",),
)
forwarder = WebhookForwardHandler(endpoints=[customer], spool_path=SPOOL, allow_private_networks=PRIVATE_OK)

app = FastAPI()
app.add_middleware(EventHandlerASGIMiddleware, handlers=[forwarder])


@app.post("/orders/{order_id}/pay")
async def pay(order_id: int) -> dict[str, str]:
    dispatch("order.paid", {"order_id": order_id, "amount": "19.90"})
    return {"status": "paid"}
