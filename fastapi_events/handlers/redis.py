"""0.x import path of ``RedisStreamForwardHandler``, which lives in :mod:`fastapi_events.brokers.redis`."""

from __future__ import annotations

from ..brokers.redis import RedisStreamForwardHandler

__all__ = ["RedisStreamForwardHandler"]
