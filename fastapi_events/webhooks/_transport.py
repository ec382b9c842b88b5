"""One endpoint's :class:`~fastapi_events.delivery.Transport`: a signed POST per event, the answer mapped onto
the delivery layer's outcomes.

- 2xx: delivered;
- 410 Gone: the endpoint is disabled - this and every later event for it is dead-lettered, said once at ERROR;
- 408, 429, 5xx, timeouts and connection errors: retried (``Retry-After`` honoured, up to an hour);
- 3xx: a failure, retried (redirects are never followed: the signature was made for this URL);
- any other 4xx: dead-lettered at once;
- a host that is or resolves to a non-public address: dead-lettered at once, nothing sent.

Connection errors count against the retry budget rather than pausing the lane as a broker outage does: an
endpoint is a customer's server, and one that stays down must end in dead letters an operator can replay.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import ssl
import time
from collections.abc import Sequence

import certifi
import httpcore
import httpx

from ..delivery import DELIVERED, EntryResult, OutboundMessage, Outcome
from ._endpoint import WebhookEndpoint
from ._signing import signature
from ._ssrf import GuardedBackend, PrivateAddressError

logger = logging.getLogger("fastapi_events.webhooks")

MAX_RETRY_AFTER = 3600.0  # seconds; an endpoint asking for more must not park an event for days
_RESPONSE_BYTES = 64 * 1024  # read to keep the connection reusable; more is not worth the time
_RETRIED_STATUSES = frozenset({408, 429})
USER_AGENT = "fastapi-events-webhooks"
# Due again at once: the delivery layer's key order then parks it behind the failed event of its key, so the
# two come back in the same round, in order (a backoff of its own could bring it back first).
_HELD_BACK = EntryResult(Outcome.RETRY, "not sent: an earlier event of the same key was not delivered", retry_after=0.0)


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), capped; ``None`` when absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)


class WebhookTransport:
    """POSTs to one :class:`WebhookEndpoint` over its own pooled HTTP client."""

    system = "webhook"
    # Up to 10 events per batch and max_concurrency batches at once, so that a delivery round holds 100 events
    # and one slow POST holds up the round's end less; the POSTs themselves share the endpoint's
    # max_concurrency slots (a semaphore), so short backlogs still use every slot.
    max_batch_count = 10
    max_batch_bytes = 4 * 1024 * 1024
    max_message_bytes = 4 * 1024 * 1024

    def __init__(self, endpoint: WebhookEndpoint, *, timeout: float, allow_private_networks: bool) -> None:
        self.endpoint = endpoint
        self.destination = endpoint.url
        self.max_concurrent_batches = endpoint.max_concurrency
        self.timeout = timeout
        self.allow_private_networks = allow_private_networks
        self.disabled_reason: str | None = None
        self._keys = endpoint.keys
        self._idle: list[httpx.AsyncClient] = []  # clients (one connection each) not in use right now
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(endpoint.max_concurrency)

    @property
    def active(self) -> bool:
        return self.disabled_reason is None

    def enable(self) -> None:
        self.disabled_reason = None

    def disable(self, reason: str) -> None:
        self.disabled_reason = f"endpoint {self.endpoint.url} disabled: {reason}"

    def message_size(self, message: OutboundMessage) -> int:
        return len(message.body)

    def _new_client(self) -> httpx.AsyncClient:
        # One keep-alive connection per client, and as many clients as POSTs in flight (at most
        # max_concurrency, which the delivery layer enforces): httpcore's pool polls every idle connection of
        # a pool on each request, so one pool of ten connections costs far more CPU per event than ten pools
        # of one. trust_env=False: an HTTP(S)_PROXY from the environment would resolve the host past the guard.
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        transport = httpx.AsyncHTTPTransport(verify=ssl_context(), trust_env=False, limits=limits)
        if not self.allow_private_networks:
            # httpx has no public way to pass httpcore a network backend; this is the pool it builds, the same
            # settings plus the backend that resolves, checks and connects (tests/webhooks/test_ssrf.py).
            transport._pool = _guarded_pool(1)
        return httpx.AsyncClient(
            transport=transport, timeout=self.timeout, follow_redirects=False, headers={"user-agent": USER_AGENT}
        )

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Connections belong to the loop that opened them; the old loop may be closed already.
            self._idle, self._loop = [], loop
            self._slots = asyncio.Semaphore(self.endpoint.max_concurrency)

    async def send_batch(self, batch: Sequence[OutboundMessage]) -> Sequence[EntryResult]:
        if self._loop is not asyncio.get_running_loop():
            await self.open()
        # Events of one key go one after another (and stop at the first not delivered); all else in parallel.
        results: list[EntryResult] = [DELIVERED] * len(batch)
        chains: dict[object, list[int]] = {}
        for index, message in enumerate(batch):
            chains.setdefault(message.key if message.key is not None else index, []).append(index)

        async def run(indices: list[int]) -> None:
            for position, index in enumerate(indices):
                async with self._slots:
                    results[index] = await self._post(batch[index])
                if results[index].outcome is not Outcome.DELIVERED:
                    for later in indices[position + 1 :]:
                        results[later] = _HELD_BACK
                    return

        await asyncio.gather(*(run(indices) for indices in chains.values()))
        return results

    async def _post(self, message: OutboundMessage) -> EntryResult:
        if self.disabled_reason is not None:
            return EntryResult(Outcome.PERMANENT, self.disabled_reason)
        client = self._idle.pop() if self._idle else self._new_client()
        try:
            return await self._post_with(client, message)
        finally:
            self._idle.append(client)

    async def _post_with(self, client: httpx.AsyncClient, message: OutboundMessage) -> EntryResult:
        timestamp = int(time.time())
        keys = self._keys
        if len(keys) == 1:
            signed = signature(keys[0], message.id, timestamp, message.body)
        else:  # rotating: one signature per secret, space-separated; the receiver may hold any of them
            signed = " ".join(signature(key, message.id, timestamp, message.body) for key in keys)
        headers = {
            "content-type": "application/json",
            "webhook-id": message.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signed,
        }
        try:
            async with client.stream("POST", self.endpoint.url, content=message.body, headers=headers) as reply:
                read = 0
                async for chunk in reply.aiter_raw():
                    read += len(chunk)
                    if read > _RESPONSE_BYTES:
                        break
        except PrivateAddressError as exc:
            return EntryResult(Outcome.PERMANENT, str(exc))
        except httpx.TimeoutException as exc:
            return EntryResult(Outcome.RETRY, f"no answer within {self.timeout}s ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return EntryResult(Outcome.RETRY, f"{type(exc).__name__}: {exc}")
        return self._verdict(reply)

    def _verdict(self, reply: httpx.Response) -> EntryResult:
        status = reply.status_code
        if 200 <= status < 300:
            return DELIVERED
        # The URL is in the reason: on_dead_letter(message, reason) has no other way to say which endpoint it was.
        said = f"endpoint {self.endpoint.url} answered {status} {reply.reason_phrase}".rstrip()
        if status == 410:
            if self.disabled_reason is None:
                self.disabled_reason = f"{said}: endpoint disabled, nothing more is sent to it"
                logger.error(
                    "webhook endpoint %s answered 410 Gone: disabled; its events are dead-lettered from now on "
                    "(other endpoints are not affected)",
                    self.endpoint.url,
                )
            return EntryResult(Outcome.PERMANENT, self.disabled_reason)
        if 300 <= status < 400:
            location = reply.headers.get("location", "")
            return EntryResult(Outcome.RETRY, f"{said}, redirect to {location!r} not followed")
        if status in _RETRIED_STATUSES or status >= 500:
            wait = retry_after(reply.headers.get("retry-after"), time.time())
            return EntryResult(Outcome.RETRY, said, retry_after=wait)
        if 400 <= status < 500:
            return EntryResult(Outcome.PERMANENT, said)
        return EntryResult(Outcome.RETRY, said)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        if self._loop is asyncio.get_running_loop():
            for client in idle:
                await client.aclose()


def ssl_context() -> ssl.SSLContext:
    """Certificates verified against certifi's CA bundle (httpx's default), never against SSL_CERT_FILE & co."""
    return ssl.create_default_context(cafile=certifi.where())


def _guarded_pool(limit: int) -> httpcore.AsyncConnectionPool:
    return httpcore.AsyncConnectionPool(
        ssl_context=ssl_context(),
        max_connections=limit,
        max_keepalive_connections=limit,
        keepalive_expiry=5.0,
        http1=True,
        http2=False,
        network_backend=GuardedBackend(),
    )


__all__ = ["MAX_RETRY_AFTER", "WebhookTransport", "retry_after"]
