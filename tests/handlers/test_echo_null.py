from __future__ import annotations

import enum

from fastapi.testclient import TestClient

from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.echo import EchoHandler
from fastapi_events.handlers.null import NullHandler
from tests.apps import Recorder, app_with


class Kind(enum.Enum):
    PING = "ping"


def test_echo_prints_each_event_and_null_drops_them(capsys) -> None:
    recorder = Recorder()
    app = app_with(EchoHandler(), NullHandler(), recorder)

    @app.get("/")
    async def index() -> dict[str, str]:
        dispatch(Kind.PING, {"n": 1})
        dispatch("second")
        return {}

    with TestClient(app) as client:
        client.get("/")
    out = capsys.readouterr().out.splitlines()
    assert out == ["('ping', {'n': 1})", "('second', None)"]
    assert len(recorder.events) == 2
