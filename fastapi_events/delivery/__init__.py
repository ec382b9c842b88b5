"""The delivery layer shared by every broker forwarder: batching, retries, durable spool, dead letters."""

from __future__ import annotations

from .batching import Batches, split_batches
from .deadletters import DeadLetterCallback
from .forwarder import ForwarderStats, ForwardHandler, KeyFunction
from .memory import MemoryStore
from .options import DeliveryKwargs, DeliveryOptions
from .retry import RetryPolicy
from .spool import SpoolDB, SpoolRecord
from .store import DeadLetter, Entry, PendingStore, Retry
from .transport import DELIVERED, EntryResult, OutboundMessage, Outcome, Transport

__all__ = [
    "DELIVERED",
    "Batches",
    "DeadLetter",
    "DeadLetterCallback",
    "DeliveryKwargs",
    "DeliveryOptions",
    "Entry",
    "EntryResult",
    "ForwardHandler",
    "ForwarderStats",
    "KeyFunction",
    "MemoryStore",
    "OutboundMessage",
    "Outcome",
    "PendingStore",
    "Retry",
    "RetryPolicy",
    "SpoolDB",
    "SpoolRecord",
    "Transport",
    "split_batches",
]
