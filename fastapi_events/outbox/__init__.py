"""The transactional outbox (extra ``fastapi-events[outbox]``): events committed with the app's own data.

See :class:`SQLAlchemyOutbox`; handlers that must apply a redelivered event only once use :class:`Inbox`.
"""

from __future__ import annotations

from ._inbox import Inbox
from ._outbox import OutboxDeadLetter, SQLAlchemyOutbox
from ._store import ScheduledEvent

# isort: split
# The internal face: what the other packages of fastapi_events may use. Not public API: no stability promise.
from ._admin import OutboxAdmin as OutboxAdmin
from ._db import make_engine as make_engine
from ._standalone import flatten_handlers as flatten_handlers
from ._standalone import serve as serve

__all__ = ["Inbox", "OutboxDeadLetter", "SQLAlchemyOutbox", "ScheduledEvent"]
