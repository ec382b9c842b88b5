"""Outbound webhooks (Standard Webhooks 1.0) on the delivery layer, and a verifying receiver.

``WebhookForwardHandler`` needs httpx (``pip install "fastapi-events[webhooks]"``); the endpoint, the receiver
and the secret helper do not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from ._endpoint import WebhookEndpoint
from ._receiver import WebhookReceiver
from ._signing import new_webhook_secret

if TYPE_CHECKING:
    from ._forwarder import WebhookForwardHandler

__getattr__ = lazy_exports(__name__, {"._forwarder": ("WebhookForwardHandler",)}, requires=("httpx", "webhooks"))

__all__ = ["WebhookEndpoint", "WebhookForwardHandler", "WebhookReceiver", "new_webhook_secret"]
