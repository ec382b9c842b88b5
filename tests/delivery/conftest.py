from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests._servers import MotoServer, free_port
from tests._sqs import Queue


@pytest.fixture
def sqs_queue(moto_server: MotoServer) -> Queue:
    """A fresh queue on the shared moto_server with a real consumer."""
    return Queue(dict(moto_server.client_kwargs))


@pytest.fixture
def spool_path(tmp_path: Path) -> str:
    return str(tmp_path / "spool" / "events.db")


@pytest.fixture
def dead_endpoint() -> Callable[[], dict[str, str]]:
    """Client kwargs pointing at a port where nothing listens (a broker that is down)."""

    def make() -> dict[str, str]:
        return {
            "endpoint_url": f"http://127.0.0.1:{free_port()}",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }

    return make
