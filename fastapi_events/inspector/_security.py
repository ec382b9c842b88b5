"""Who may see the inspector, and which POSTs are the page's own.

- Reading: loopback clients only, unless an ``authorize(connection) -> bool`` hook (sync or async) decides.
- Changing (replay, purge): a token handed to the page when it is served, plus a same-origin request: the
  ``Origin`` header must be this very origin and ``Sec-Fetch-Site``, when the browser sends it, ``same-origin``.
  Tokens are ``nonce.hmac(secret, nonce)``: every page load gets its own, nothing is stored per page, and a token
  stays valid only as long as the :class:`Inspector` (its secret lives in memory).
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import ipaddress
import secrets
from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection

#: ``authorize(connection) -> bool``, sync or async.
Authorize = Callable[[HTTPConnection], bool | Awaitable[bool]]

TOKEN_HEADER = "x-inspector-token"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:  # "testclient", a unix socket path...: not an address we can vouch for
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 from a dual-stack listener
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


async def allowed(connection: HTTPConnection, authorize: Authorize | None) -> bool:
    if authorize is None:
        client = connection.client
        return is_loopback(client.host if client is not None else None)
    verdict = authorize(connection)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    return verdict is True


class Tokens:
    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()

    def issue(self) -> str:
        nonce = secrets.token_urlsafe(16)
        return f"{nonce}.{self._sign(nonce)}"

    def valid(self, token: str | None) -> bool:
        if not token or "." not in token:
            return False
        nonce, _, signature = token.partition(".")
        return hmac.compare_digest(signature, self._sign(nonce))


def same_origin(connection: HTTPConnection) -> bool:
    headers = connection.headers
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        return False
    origin = headers.get("origin")
    host = headers.get("host")
    if not origin or not host:
        return False
    # Either scheme: behind a TLS-terminating proxy the app sees http while the browser's origin is https.
    return origin in (f"http://{host}", f"https://{host}")


__all__ = ["TOKEN_HEADER", "Authorize", "Tokens", "allowed", "is_loopback", "same_origin"]
