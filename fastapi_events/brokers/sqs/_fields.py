"""Limits of SQS messages both sides of the SQS broker respect."""

from __future__ import annotations

#: SQS refuses a message with more message attributes than this.
MAX_ATTRIBUTES = 10

__all__ = ["MAX_ATTRIBUTES"]
