"""Live event streams for browsers: Server-Sent Events and WebSockets, with resume, authorization and fan-out.

``EventStream`` is a handler: give it to :class:`~fastapi_events.middleware.EventHandlerASGIMiddleware` and mount
``stream.app``. Only Starlette is needed; ``url=redis://...`` needs the ``redis`` extra.
"""

from ._entry import StreamEvent
from ._stream import EventStream
from ._subscription import Subscription, SubscriptionOverflow

__all__ = ["EventStream", "StreamEvent", "Subscription", "SubscriptionOverflow"]
