from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends

from fastapi_events.handlers.local import local_handler
from fastapi_events.typing import Event


class Session:
    """Stands in for your database session."""

    def __init__(self) -> None:
        self.rows: list[object] = []
        self.closed = False

    async def close(self) -> None:
        self.closed = True


async def get_session() -> AsyncIterator[Session]:
    session = Session()
    try:
        yield session  # torn down after the handler, also when it raises
    finally:
        await session.close()


@local_handler.register(event_name="order.*")  # fnmatch patterns; "*" or no event_name: every event
async def project_order(event: Event, session: Annotated[Session, Depends(get_session)]) -> None:
    name, payload = event
    session.rows.append((name, payload))


receipts: list[int] = []


@local_handler.register(event_name="order.placed")
def send_receipt(event: Event) -> None:  # sync handlers run in a worker thread
    receipts.append(event[1]["order_id"])
