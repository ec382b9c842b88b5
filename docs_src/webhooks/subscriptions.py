"""Stop sending to an endpoint that answered 410 Gone for good: keep that with your subscriptions, and build the
forwarder from the active ones when the app starts (the forwarder itself forgets it when the process ends)."""

import re
from typing import Any

from fastapi_events.delivery import OutboundMessage
from fastapi_events.webhooks import WebhookEndpoint, WebhookForwardHandler

# Yours is a database table: url, secret, event patterns, active.
subscriptions: dict[str, dict[str, Any]] = {}


def on_dead_letter(message: OutboundMessage, reason: str) -> None:
    # The reason of an HTTP answer says "endpoint <url> answered <status> <phrase>".
    gone = re.search(r"endpoint (\S+) answered 410 ", reason)
    if gone is not None:
        subscriptions[gone.group(1)]["active"] = False  # e.g. UPDATE subscriptions SET active = false WHERE url = ...


def make_forwarder(**options: Any) -> WebhookForwardHandler:
    endpoints = [
        WebhookEndpoint(url, row["secret"], events=row["events"]) for url, row in subscriptions.items() if row["active"]
    ]
    return WebhookForwardHandler(endpoints, on_dead_letter=on_dead_letter, **options)
