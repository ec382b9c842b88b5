"""``WebhookReceiver``: verifies Standard Webhooks deliveries and dispatches them into the receiving app."""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .._event_meta import IdentifiedEvent
from ..concurrency import BlockingExecutor
from ..dispatcher import check_event_context, dispatch_received, received_event
from ..errors import ConfigurationError, NoEventContextError
from ..typing import Receive, Scope, Send
from ._endpoint import event_patterns, matches
from ._mount import serve_bare_mount_paths
from ._signing import decode_secret, signature_matches

if TYPE_CHECKING:  # SQLAlchemy is optional (the outbox extra)
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
    from sqlalchemy.orm import Session


class Inbox(Protocol):
    """What the receiver needs of :class:`fastapi_events.outbox.Inbox` (the outbox sits above this layer)."""

    def claim(self, session: Session, event: Any, handler: str) -> bool: ...

    async def claim_async(self, session: AsyncSession, event: Any, handler: str) -> bool: ...


logger = logging.getLogger("fastapi_events.webhooks")

_ID_LIMIT = 256  # characters of a webhook-id we are prepared to remember
_INBOX_ID_CHARS = 64  # the inbox table's event_id column; a longer webhook-id is recorded as its SHA-256


class _Reject(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class WebhookReceiver:
    """A small ASGI app (``receiver.app``) answering a POST at its mount path, with or without trailing slash.

    - valid signature (any of the space-separated ``v1,`` signatures, with any of ``secret``'s keys - pass a
      list while rotating), timestamp within ``tolerance`` seconds, JSON body with ``type`` and ``data``: 204,
      and ``(type, data)`` dispatched into the app's ``EventHandlerASGIMiddleware`` with the ``webhook-id`` as
      its id (``event_meta().id``, and the id forwarders send it on with) and the body's ``timestamp`` as
      ``event_meta().dispatched_at``;
    - a ``webhook-id`` among the last ``remember`` ones accepted: 204, not dispatched again; with
      ``inbox=Inbox(), engine=engine`` (the outbox's :class:`~fastapi_events.outbox.Inbox`, an SQLAlchemy
      ``AsyncEngine`` or ``Engine``) every id ever accepted is recorded in the database, so a redelivery after a
      restart, or to another replica, is not dispatched again either (``inbox_name`` is the record's handler
      name);
    - a ``type`` matching none of ``events`` (fnmatch patterns, default ``("*",)``): 204, not dispatched (the
      sender need not retry what this app does not take; an authenticated sender still cannot raise the app's
      other events);
    - missing or bad signature, unknown secret, stale or future timestamp: 401, nothing dispatched;
    - a body that is not such JSON: 400; over ``max_body_bytes``: 413; another method: 405.

    Mount it in an app that has the middleware: ``app.mount("/webhooks", receiver.app)``. Senders do not follow
    redirects, so the bare path (``/webhooks``) is served too instead of Starlette's 307 to ``/webhooks/``: the
    middleware points the app's router at the receiver when the app starts (lifespan).
    """

    def __init__(
        self,
        secret: str | Sequence[str],
        tolerance: float = 300,
        *,
        remember: int = 10_000,
        max_body_bytes: int = 1024 * 1024,
        inbox: Inbox | None = None,
        engine: AsyncEngine | Engine | None = None,
        inbox_name: str = "webhooks",
        events: Sequence[str] = ("*",),
    ) -> None:
        secrets = [secret] if isinstance(secret, str) else list(secret)
        if not secrets:
            raise ConfigurationError("WebhookReceiver needs at least one secret")
        self._keys = [decode_secret(s) for s in secrets]
        ok = isinstance(tolerance, (int, float)) and not isinstance(tolerance, bool) and math.isfinite(tolerance)
        if not ok or tolerance <= 0:
            raise ConfigurationError(f"tolerance must be a number of seconds > 0, not {tolerance!r}")
        if isinstance(remember, bool) or not isinstance(remember, int) or remember < 0:
            raise ConfigurationError(f"remember must be an int >= 0, not {remember!r}")
        self.tolerance = float(tolerance)
        self.remember = remember
        self.max_body_bytes = max_body_bytes
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.events = event_patterns(events)
        if (inbox is None) != (engine is None):
            raise ConfigurationError("pass inbox= and engine= (an SQLAlchemy Engine or AsyncEngine) together")
        self._async_engine = engine is not None and _is_async_engine(engine)
        self._threads: BlockingExecutor | None = None
        if engine is not None and not self._async_engine:
            if not _is_sync_engine(engine):
                raise ConfigurationError(f"engine= must be an SQLAlchemy Engine or AsyncEngine, not {engine!r}")
            # A sync engine's calls block: they run in threads of the receiver's own, never on the event loop.
            self._threads = BlockingExecutor("webhook-inbox", workers=4)
        self.inbox, self.engine, self.inbox_name = inbox, engine, inbox_name
        serve_bare_mount_paths(self)

    @property
    def app(self) -> WebhookReceiver:
        return self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # only when run as an app of its own
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            raise RuntimeError(f"WebhookReceiver serves HTTP, not {scope['type']!r}")
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        relative = path[len(root) :] if root and path.startswith(root) else path
        await self.serve_root(scope, receive, send) if relative in ("", "/") else await _answer(send, 404, "not found")

    async def serve_root(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a delivery POSTed to the receiver's own path."""
        try:
            if scope.get("method") != "POST":
                raise _Reject(405, "POST only")
            body = await self._body(receive)
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
            message_id = self._verify(headers, body)
            name, data, sent_at = _parse(body)
            if not matches(self.events, name):
                logger.info("webhook %s of type %r not dispatched: not among the receiver's events", message_id, name)
                await _answer(send, 204)
                return
            if message_id in self._seen:
                self._seen.move_to_end(message_id)
                await _answer(send, 204)
                return
            # Everything that may refuse the event is checked before the inbox records its id: a recorded id is
            # never dispatched, and buffering the event (last) cannot fail.
            event = _received(name, data, message_id, sent_at)
            if self.inbox is None or await self._claim(message_id):
                dispatch_received(event)
            self._remember(message_id)
        except _Reject as rejected:
            await _answer(send, rejected.status, rejected.detail, allow=rejected.status == 405)
            return
        await _answer(send, 204)

    async def _body(self, receive: Receive) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Reject(400, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _Reject(413, "body too large")
            parts.append(chunk)
            if not message.get("more_body"):
                return b"".join(parts)

    def _verify(self, headers: dict[str, str], body: bytes) -> str:
        message_id = headers.get("webhook-id", "")
        stamp = headers.get("webhook-timestamp", "")
        offered = headers.get("webhook-signature", "")
        if not message_id or not stamp or not offered or len(message_id) > _ID_LIMIT:
            raise _Reject(401, "missing webhook-id, webhook-timestamp or webhook-signature")
        try:
            timestamp = int(stamp)
        except ValueError:
            raise _Reject(401, "bad webhook-timestamp") from None
        if abs(time.time() - timestamp) > self.tolerance:
            raise _Reject(401, "webhook-timestamp outside the tolerance")
        if not signature_matches(self._keys, message_id, timestamp, body, offered):
            raise _Reject(401, "no valid signature")
        return message_id

    async def _claim(self, message_id: str) -> bool:
        """Record the id in the inbox (committed): ``False`` when a committed record had it already."""
        record = message_id
        if len(record) > _INBOX_ID_CHARS:
            record = hashlib.sha256(message_id.encode("utf-8")).hexdigest()
        if self._threads is not None:
            return await self._threads.run(self._claim_sync, record)
        from sqlalchemy.ext.asyncio import AsyncSession

        assert self.inbox is not None
        async with AsyncSession(self.engine) as session, session.begin():  # type: ignore[arg-type]
            return await self.inbox.claim_async(session, record, self.inbox_name)

    def _claim_sync(self, record: str) -> bool:
        from sqlalchemy.orm import Session

        assert self.inbox is not None
        with Session(self.engine) as session, session.begin():  # type: ignore[arg-type]
            return self.inbox.claim(session, record, self.inbox_name)

    def _remember(self, message_id: str) -> None:
        if self.remember:
            self._seen[message_id] = None
            while len(self._seen) > self.remember:
                self._seen.popitem(last=False)


def _received(name: str, data: Any, message_id: str, sent_at: float | None) -> IdentifiedEvent:
    try:
        check_event_context()
        return received_event(name, data, message_id, sent_at)
    except NoEventContextError:
        logger.error("WebhookReceiver is mounted in an app without EventHandlerASGIMiddleware")
        raise _Reject(500, "receiver not set up") from None
    except ValueError as exc:  # the app's payload schema refused the data
        raise _Reject(400, f"invalid data for {name!r}: {exc}") from None


def _is_async_engine(engine: Any) -> bool:
    try:
        from sqlalchemy.ext.asyncio import AsyncEngine
    except ImportError:  # pragma: no cover - SQLAlchemy comes with the outbox extra
        return False
    return isinstance(engine, AsyncEngine)


def _is_sync_engine(engine: Any) -> bool:
    try:
        from sqlalchemy.engine import Engine
    except ImportError:  # pragma: no cover - SQLAlchemy comes with the outbox extra
        return False
    return isinstance(engine, Engine)


def _sent_at(stamp: Any) -> float | None:
    """The body's ISO-8601 ``timestamp`` as epoch seconds; ``None`` when absent or not a zoned time."""
    if not isinstance(stamp, str):
        return None
    try:
        when = datetime.datetime.fromisoformat(stamp[:-1] + "+00:00" if stamp.endswith("Z") else stamp)
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None


def _parse(body: bytes) -> tuple[str, Any, float | None]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _Reject(400, "body is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("type"), str) or "data" not in document:
        raise _Reject(400, 'body must be a JSON object with "type" (a string) and "data"')
    if not document["type"]:
        raise _Reject(400, '"type" is empty')
    return document["type"], document["data"], _sent_at(document.get("timestamp"))


async def _answer(send: Send, status: int, detail: str = "", *, allow: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode() if detail else b""
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", b"application/json"))
    if allow:
        headers.append((b"allow", b"POST"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = ["WebhookReceiver"]
