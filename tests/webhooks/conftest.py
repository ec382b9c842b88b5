from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.webhooks._endpoint import Recorder, ThreadServer


@pytest.fixture
def serve() -> Iterator[Callable[..., ThreadServer]]:
    """Start an ASGI app under uvicorn on a free loopback port; stopped when the test ends."""
    servers: list[ThreadServer] = []

    def start(app: Any, port: int | None = None, **settings: Any) -> ThreadServer:
        server = ThreadServer(app, port, **settings)
        servers.append(server)
        return server.start()

    yield start
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def endpoint(serve: Callable[..., ThreadServer]) -> Callable[..., tuple[Recorder, str]]:
    """``endpoint(script=..., default=...)`` -> (recorder, url) of a real recording endpoint."""

    def make(*args: Any, **kwargs: Any) -> tuple[Recorder, str]:
        recorder = Recorder(*args, **kwargs)
        return recorder, serve(recorder).url + "/hook"

    return make
