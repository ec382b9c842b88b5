"""``GET /`` of the stream app: Server-Sent Events."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from ..typing import Receive, Scope, Send
from ._access import HookFailed, Refused, check
from ._entry import StreamEvent, control_frame
from ._session import Session
from ._subscription import parse_patterns

if TYPE_CHECKING:
    from ._stream import EventStream

logger = logging.getLogger("fastapi_events.stream")

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-store"),
    # nginx buffers proxied responses unless told not to; a live stream must not be buffered.
    (b"x-accel-buffering", b"no"),
]
KEEPALIVE = b": keepalive\n\n"


async def plain_response(send: Send, status: int, text: str, *headers: tuple[bytes, bytes]) -> None:
    body = text.encode()
    length = b"%d" % len(body)
    head = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", length), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def serve_sse(stream: EventStream, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["method"] != "GET":
        await plain_response(send, 405, "event stream: use GET\n", (b"allow", b"GET"))
        return
    connection = HTTPConnection(scope, receive)
    try:
        await check(connection, stream.authorize)
    except Refused as exc:
        await plain_response(send, 403, f"{exc}\n")
        return
    except HookFailed:
        await plain_response(send, 500, "event stream: the authorize hook failed\n")
        return
    params = connection.query_params
    last_id = connection.headers.get("last-event-id") or params.get("last_event_id") or None
    subscription = stream.subscribe(
        parse_patterns(params.getlist("events")), last_event_id=last_id, connection=connection
    )
    try:
        await subscription.open()
    except Exception as exc:  # Redis unreachable (url=): say so instead of a bare 500
        logger.exception("event stream subscription failed")
        # The type only: the message may name internal hosts; the log has it all.
        await plain_response(send, 503, f"event stream unavailable: {type(exc).__name__} (see the server log)\n")
        return
    try:
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        session = Session(
            subscription, receive, "http.disconnect", keepalive=stream.keepalive, send_timeout=stream.send_timeout
        )
        # The first chunk goes out at once: clients see the stream open, and resume gaps come before any event.
        first = control_frame("gap", subscription.gap) if subscription.gap is not None else KEEPALIVE

        async def write(batch: list[StreamEvent]) -> None:
            body = b"".join([entry.sse for entry in batch])
            await send({"type": "http.response.body", "body": body, "more_body": True})

        async def ping() -> None:
            await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})

        async def overflow() -> None:
            info = {"reason": f"more than {stream.queue_size} events behind", "queue_size": stream.queue_size}
            await send({"type": "http.response.body", "body": control_frame("overflow", info)})

        async def end() -> None:
            await send({"type": "http.response.body", "body": b""})

        await send({"type": "http.response.body", "body": first, "more_body": True})
        await session.run(write, ping, overflow, end)
    finally:
        await subscription.aclose()


__all__ = ["plain_response", "serve_sse"]
