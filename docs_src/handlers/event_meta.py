from fastapi import Depends

from fastapi_events import EventMeta, event_meta
from fastapi_events.handlers.local import local_handler
from fastapi_events.typing import Event

seen: list[EventMeta] = []


@local_handler.register(event_name="order.*")
async def on_order(event: Event, meta: EventMeta = Depends(event_meta)) -> None:
    print(
        meta.id,  # stable event id (the same for every handler of this event)
        meta.name,  # "order.placed"
        meta.dispatched_at,  # epoch seconds (outbox events; None when the producer did not say)
        meta.attempt,  # 1 on the first delivery, 2, 3, ... on redeliveries
    )
    seen.append(meta)
