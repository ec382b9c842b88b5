"""myapp/events.py: the handlers the web app registers, run by a consumer process as well.

    python -m fastapi_events consume "redis://redis:6379/0/orders?group=billing" \
        --handlers docs_src.consumers.handlers:billing
"""

from fastapi_events.handlers.local import LocalHandler
from fastapi_events.typing import Event

billing = LocalHandler()
invoiced: list[int] = []


@billing.register(event_name="order.placed")
async def invoice(event: Event) -> None:
    _, order = event
    if order["total"] < 0:
        raise ValueError("negative total")  # retried, then dead-lettered with this reason
    invoiced.append(order["id"])
