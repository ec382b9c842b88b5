"""The transactional outbox (extra ``fastapi-events[outbox]``): events committed with the app's own data.

See :class:`SQLAlchemyOutbox`; handlers that must apply a redelivered event only once use :class:`Inbox`.
"""

from __future__ import annotations

from ._inbox import Inbox
from ._outbox import OutboxDeadLetter, SQLAlchemyOutbox
from ._scheduled import ScheduledEvent

__all__ = ["Inbox", "OutboxDeadLetter", "SQLAlchemyOutbox", "ScheduledEvent"]
