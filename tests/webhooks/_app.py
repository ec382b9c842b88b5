"""The sending app run by uvicorn in a subprocess (so that it can be SIGKILLed): events posted to
``/events/{name}`` go to the webhook endpoint ``FE_WEBHOOK_URL``, spooled in ``FE_SPOOL``."""

from __future__ import annotations

import os

from fastapi import FastAPI

from fastapi_events import RetryPolicy
from fastapi_events.webhooks import WebhookEndpoint, WebhookForwardHandler
from tests.delivery._app import make_app
from tests.webhooks._endpoint import SECRET


def app_from_env() -> FastAPI:
    forwarder = WebhookForwardHandler(
        [WebhookEndpoint(os.environ["FE_WEBHOOK_URL"], SECRET)],
        allow_private_networks=True,
        timeout=5.0,
        spool_path=os.environ["FE_SPOOL"],
        retry=RetryPolicy(max_attempts=None, initial_delay=0.1, max_delay=0.5),
    )
    return make_app(forwarder)  # type: ignore[arg-type]  # make_app only uses handler.stats
