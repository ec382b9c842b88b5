"""Who may subscribe: the ``authorize=`` hook, or loopback clients only; WebSockets also from the same origin only.

Without a hook the default must stay safe behind a reverse proxy on the same host (which makes every client look
like loopback) and against DNS rebinding (a remote page whose name resolves to 127.0.0.1), so it also requires no
proxy headers and a loopback ``Host``.
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Collection
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

logger = logging.getLogger("fastapi_events.stream")

#: ``authorize(connection) -> bool`` (or an awaitable of it).
Authorize = Callable[[HTTPConnection], "bool | Awaitable[bool]"]

_PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
_LOOPBACK_NAMES = ("localhost", "localhost.")


class Refused(Exception):
    """Subscription refused; ``str()`` says why (shown to the client)."""


class HookFailed(Exception):
    """The ``authorize`` hook raised; the client gets a server error, the log the traceback."""


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _loopback_refusal(connection: HTTPConnection) -> str | None:
    client = connection.client
    host = client.host if client is not None else ""
    if not _is_loopback(host):
        return (
            f"event stream refused for client {host or 'unknown'}: only loopback clients may subscribe unless the "
            "app passes EventStream(authorize=...)"
        )
    headers = connection.headers
    for name in _PROXY_HEADERS:
        if name in headers:
            return (
                f"event stream refused: the request came through a proxy ({name} header), so the client is not "
                "known to be loopback; pass EventStream(authorize=...) to allow it"
            )
    host_header = headers.get("host", "")
    if host_header and not _is_loopback(urlsplit(f"//{host_header}").hostname or ""):
        return (
            f"event stream refused: Host {host_header!r} is not a loopback name; pass EventStream(authorize=...) "
            "to serve other hosts"
        )
    return None


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
