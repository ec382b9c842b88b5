from enum import Enum

import pydantic

from fastapi_events.dispatcher import dispatch


class OrderEvents(Enum):
    PLACED = "order.placed"


class InvoiceIssued(pydantic.BaseModel):
    __event_name__ = "invoice.issued"
    invoice_id: int


def place_order() -> None:  # called anywhere during a request
    dispatch("order.placed", {"order_id": 7})  # name and payload (any type, or none)
    dispatch(OrderEvents.PLACED, {"order_id": 7})  # Enum names; handlers match on the value
    dispatch(InvoiceIssued(invoice_id=3))  # a model: name from __event_name__, payload = model_dump()
