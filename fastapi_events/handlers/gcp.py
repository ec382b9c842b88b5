"""0.x import path of ``GoogleCloudSimplePubSubHandler``, which lives in :mod:`fastapi_events.brokers.pubsub`."""

from __future__ import annotations

from ..brokers.pubsub import GoogleCloudSimplePubSubHandler

__all__ = ["GoogleCloudSimplePubSubHandler"]
