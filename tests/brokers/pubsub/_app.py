"""uvicorn ``--factory`` entry point for the Pub/Sub crash test, configured from ``FE_*`` variables."""

from __future__ import annotations

import os

from fastapi import FastAPI

from fastapi_events.handlers.gcp import GoogleCloudSimplePubSubHandler
from tests.delivery._app import make_app


def app_from_env() -> FastAPI:
    # PUBSUB_EMULATOR_HOST comes from the environment the test gives the process.
    handler = GoogleCloudSimplePubSubHandler(
        os.environ["FE_PROJECT"],
        os.environ["FE_TOPIC"],
        spool_path=os.environ["FE_SPOOL"],
        reconnect_max_delay=0.3,
    )
    return make_app(handler)
