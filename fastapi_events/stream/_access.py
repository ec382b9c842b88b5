"""Who may subscribe: the ``authorize=`` hook, or loopback clients only (the rule of
:mod:`fastapi_events._access`); WebSockets also from the same origin only."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from .._access import Authorize, not_loopback

logger = logging.getLogger("fastapi_events.stream")


class Refused(Exception):
    """Subscription refused; ``str()`` says why (shown to the client)."""


class HookFailed(Exception):
    """The ``authorize`` hook raised; the client gets a server error, the log the traceback."""


def _loopback_refusal(connection: HTTPConnection) -> str | None:
    problem = not_loopback(connection)
    if problem is None:
        return None
    kind, detail = problem
    if kind == "client":
        return (
            f"event stream refused for client {detail or 'unknown'}: only loopback clients may subscribe unless the "
            "app passes EventStream(authorize=...)"
        )
    if kind == "proxy":
        return (
            f"event stream refused: the request came through a proxy ({detail} header), so the client is not "
            "known to be loopback; pass EventStream(authorize=...) to allow it"
        )
    return (
        f"event stream refused: Host {detail!r} is not a loopback name; pass EventStream(authorize=...) "
        "to serve other hosts"
    )


def _origin_refusal(connection: HTTPConnection, origins: Collection[str] | None) -> str | None:
    # Browsers send cookies with cross-site WebSocket handshakes and never block reading the socket, so another
    # site's page could otherwise subscribe in the user's name.
    origin = connection.headers.get("origin")
    if origin is None:
        return None  # not a browser
    if origins is not None:
        if "*" in origins or origin in origins:
            return None
        return f"event stream refused: origin {origin!r} is not in EventStream(origins=...)"
    if urlsplit(origin).netloc.lower() == connection.headers.get("host", "").lower():
        return None
    return f"event stream refused: cross-origin WebSocket from {origin!r}; list it in EventStream(origins=...)"


async def check(
    connection: HTTPConnection,
    authorize: Authorize | None,
    *,
    websocket: bool = False,
    origins: Collection[str] | None = None,
) -> None:
    """Raise :class:`Refused` (with the reason) or :class:`HookFailed`; return when the subscriber is allowed."""
    if websocket:
        reason = _origin_refusal(connection, origins)
        if reason is not None:
            raise Refused(reason)
    if authorize is None:
        reason = _loopback_refusal(connection)
        if reason is not None:
            raise Refused(reason)
        return
    try:
        allowed = authorize(connection)
        if inspect.isawaitable(allowed):
            allowed = await allowed
    except Exception as exc:
        logger.exception("EventStream authorize hook failed for %s", connection.url.path)
        raise HookFailed(f"{type(exc).__name__} in authorize hook") from exc
    if not allowed:
        raise Refused("event stream refused by the app's authorize hook")


__all__ = ["Authorize", "HookFailed", "Refused", "check"]
