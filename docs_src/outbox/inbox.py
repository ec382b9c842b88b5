from fastapi import Depends
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from fastapi_events import EventMeta, event_meta
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.outbox import Inbox
from fastapi_events.typing import Event

metadata = MetaData()  # your models' metadata (Base.metadata)
inbox = Inbox(metadata=metadata)  # table fastapi_events_inbox: (handler, event_id) primary key
billing = LocalHandler()
applied: list[int] = []


def register(engine: AsyncEngine) -> None:
    @billing.register(event_name="order.placed")
    async def bill(event: Event, meta: EventMeta = Depends(event_meta)) -> None:
        async with AsyncSession(engine) as session:
            if not await inbox.claim_async(session, meta, handler="billing"):
                return  # applied before: a redelivery
            applied.append(event[1]["order_id"])  # session.add(Invoice(...)) in a real handler
            await session.commit()  # the inbox record commits with the invoice, or neither does
