from __future__ import annotations

import pytest

from tests._servers import MotoServer
from tests._sqs import Queue


@pytest.fixture
def sqs_queue(moto_server: MotoServer) -> Queue:
    return Queue(dict(moto_server.client_kwargs))
