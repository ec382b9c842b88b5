from enum import Enum

import pydantic

from fastapi_events.dispatcher import dispatch
from fastapi_events.registry.payload_schema import registry as payload_schema


class OrderEvents(Enum):
    PLACED = "order.placed"


@payload_schema.register(event_name=OrderEvents.PLACED)
class OrderPlaced(pydantic.BaseModel):
    order_id: int


def place_order(order_id: object) -> None:
    dispatch(OrderEvents.PLACED, {"order_id": order_id})  # raises pydantic.ValidationError here if invalid
