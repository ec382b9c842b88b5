"""0.x import path of ``SQSForwardHandler``, which lives in :mod:`fastapi_events.brokers.sqs`."""

from __future__ import annotations

from ..brokers.sqs import SQSForwardHandler

__all__ = ["SQSForwardHandler"]
