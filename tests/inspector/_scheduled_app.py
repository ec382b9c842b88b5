"""An app with an outbox on a SQLite file (``FE_DB``) and the inspector mounted at ``/_events``, under uvicorn."""

from __future__ import annotations

import os

import sqlalchemy as sa
from fastapi import FastAPI

from fastapi_events.inspector import Inspector
from tests.outbox._delayed import Clock, make_app


def app_from_env() -> FastAPI:
    engine = sa.create_engine(f"sqlite:///{os.environ['FE_DB']}")
    app, _ = make_app(engine, [Clock()], poll_interval=60)
    app.mount("/_events", Inspector().app)
    return app
