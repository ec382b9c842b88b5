"""``WS /ws`` of the stream app: one JSON text message ``{"id", "name", "payload"}`` per event."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from ..typing import Receive, Scope, Send
from ._access import HookFailed, Refused, check
from ._entry import StreamEvent, control_text
from ._session import Session
from ._subscription import parse_patterns

if TYPE_CHECKING:
    from ._stream import EventStream

logger = logging.getLogger("fastapi_events.stream")

POLICY_VIOLATION = 1008
GOING_AWAY = 1001
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
_MAX_REASON = 123  # bytes a close frame's reason may hold


def _reason(text: str) -> str:
    return text.encode()[:_MAX_REASON].decode(errors="ignore")


async def serve_ws(stream: EventStream, scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    connection = HTTPConnection(scope, receive)
    refusal: tuple[int, str] | None = None
    try:
        await check(connection, stream.authorize, websocket=True, origins=stream.origins)
    except Refused as exc:
        refusal = (POLICY_VIOLATION, str(exc))
    except HookFailed:
        refusal = (INTERNAL_ERROR, "event stream: the authorize hook failed")
    if refusal is not None:
        # Accepted first: a close before accept reaches browsers as an anonymous 1006.
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": refusal[0], "reason": _reason(refusal[1])})
        return
    params = connection.query_params
    subscription = stream.subscribe(
        parse_patterns(params.getlist("events")),
        last_event_id=params.get("last_event_id") or None,
        connection=connection,
    )
    # Subscribed before the handshake completes: whatever the client triggers once connected reaches it.
    try:
        await subscription.open()
    except Exception:  # Redis unreachable (url=)
        logger.exception("event stream subscription failed")
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": TRY_AGAIN_LATER, "reason": "event stream unavailable"})
        return
    try:
        await send({"type": "websocket.accept"})
        disconnect = "websocket.disconnect"
        session = Session(subscription, receive, disconnect, keepalive=None, send_timeout=stream.send_timeout)

        async def write(batch: list[StreamEvent]) -> None:
            for entry in batch:
                await send({"type": "websocket.send", "text": entry.ws})

        async def overflow() -> None:
            info = {"reason": f"more than {stream.queue_size} events behind", "queue_size": stream.queue_size}
            await send({"type": "websocket.send", "text": control_text("overflow", info)})
            await send({"type": "websocket.close", "code": TRY_AGAIN_LATER, "reason": "overflow"})

        async def end() -> None:
            await send({"type": "websocket.close", "code": GOING_AWAY, "reason": "server shutting down"})

        async def ping() -> None:  # pragma: no cover - WebSockets have their own keep-alive pings
            return None

        if subscription.gap is not None:
            await send({"type": "websocket.send", "text": control_text("gap", subscription.gap)})
        await session.run(write, ping, overflow, end)
    finally:
        await subscription.aclose()


__all__ = ["serve_ws"]
