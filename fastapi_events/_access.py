"""Who counts as a loopback client: the rule every page or stream that is closed by default applies.

The event stream and the inspector are served to loopback clients only unless the app passes an ``authorize``
hook. The rule must stay safe behind a reverse proxy on the same host (which makes every client look like
loopback) and against DNS rebinding (a remote page whose name resolves to 127.0.0.1), so it also requires no
proxy headers and a loopback ``Host``. Both use this module, so both agree.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

#: ``authorize(connection) -> bool`` (or an awaitable of it).
Authorize = Callable[[HTTPConnection], "bool | Awaitable[bool]"]

PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
_LOOPBACK_NAMES = ("localhost", "localhost.")


def is_loopback(host: str) -> bool:
    """``host`` (an address, bracketed or not, or a name) is this machine."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def not_loopback(connection: HTTPConnection) -> tuple[str, str] | None:
    """Why ``connection`` is not known to come from a loopback browser, or None when it does.

    The reason is ``(kind, detail)``: ``("client", address)``, ``("proxy", header name)`` or ``("host", Host)``.
    """
    client = connection.client
    host = client.host if client is not None else ""
    if not is_loopback(host):
        return ("client", host)
    headers = connection.headers
    for name in PROXY_HEADERS:
        if name in headers:
            return ("proxy", name)
    host_header = headers.get("host", "")
    if host_header and not is_loopback(urlsplit(f"//{host_header}").hostname or ""):
        return ("host", host_header)
    return None


__all__ = ["PROXY_HEADERS", "Authorize", "is_loopback", "not_loopback"]
