"""0.x import path of ``KafkaForwardHandler``, which lives in :mod:`fastapi_events.brokers.kafka`."""

from __future__ import annotations

from ..brokers.kafka import KafkaForwardHandler

__all__ = ["KafkaForwardHandler"]
