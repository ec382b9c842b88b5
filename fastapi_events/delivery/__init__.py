"""The delivery layer every broker forwarder is built on: batching, retries, durable spool, dead letters.

What is exported here is what you need to forward events to a broker of your own: implement a
:class:`Transport` (open / send a batch, one :class:`EntryResult` per :class:`OutboundMessage` / close) and wrap
it in a :class:`ForwardHandler`, which takes the :class:`DeliveryOptions` every built-in forwarder takes.
Stored events (a spool's or an outbox's pending events and dead letters) are listed as :class:`StoredRecord` s by
any :class:`StoreAdmin`.
"""

from __future__ import annotations

from ._deadletters import DeadLetterCallback
from ._encoding import KeyFunction
from ._forwarder import ForwarderStats, ForwardHandler
from ._options import DeliveryKwargs, DeliveryOptions
from ._records import StoreAdmin, StoredRecord
from ._retry import RetryPolicy
from ._transport import DELIVERED, EntryResult, OutboundMessage, Outcome, Transport

# isort: split
# The internal face: what the other packages of fastapi_events may use. Not public API: no stability promise.
from ._encoding import encode_events as encode_events
from ._options import OPTION_NAMES as OPTION_NAMES
from ._options import BaseDeliveryKwargs as BaseDeliveryKwargs
from ._options import split_options as split_options
from ._records import ADMIN_BATCH as ADMIN_BATCH
from ._records import id_chunks as id_chunks
from ._records import in_batches as in_batches
from ._rounds import send_batches as send_batches
from ._rounds import split_for as split_for
from ._spool import SpoolDB as SpoolDB
from ._store import Entry as Entry

__all__ = [
    "DELIVERED",
    "DeadLetterCallback",
    "DeliveryKwargs",
    "DeliveryOptions",
    "EntryResult",
    "ForwardHandler",
    "ForwarderStats",
    "KeyFunction",
    "OutboundMessage",
    "Outcome",
    "RetryPolicy",
    "StoreAdmin",
    "StoredRecord",
    "Transport",
]
