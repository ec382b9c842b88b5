"""Who may see the inspector, and which POSTs are the page's own.

- Reading: loopback clients only (see :func:`loopback_only`), unless an ``authorize(connection) -> bool`` hook
  (sync or async) decides.
- Changing (replay, purge): a token handed to the page when it is served, plus a same-origin request: the
  ``Origin`` header must be this very origin and ``Sec-Fetch-Site``, when the browser sends it, ``same-origin``.
  Tokens are ``nonce.hmac(secret, nonce)``: every page load gets its own, nothing is stored per page, and a token
  stays valid only as long as the :class:`Inspector` (its secret lives in memory).
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import logging
import secrets

from starlette.requests import HTTPConnection

from .._access import Authorize, not_loopback

logger = logging.getLogger("fastapi_events.inspector")

TOKEN_HEADER = "x-inspector-token"


def loopback_only(connection: HTTPConnection) -> bool:
    """The default without ``authorize``: a loopback peer that is really the browser, not a proxy or a rebound name.

    A reverse proxy on the same host makes every client look like loopback (hence no proxy headers), and a remote
    page whose host name resolves to 127.0.0.1 (DNS rebinding) reaches us with its own name in ``Host``. The
    rule is the live stream's too (:mod:`fastapi_events._access`), so both agree.
    """
    return not_loopback(connection) is None


async def allowed(connection: HTTPConnection, authorize: Authorize | None) -> bool:
    if authorize is None:
        return loopback_only(connection)
    try:
        verdict = authorize(connection)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except Exception:  # fail closed, and say why in the log rather than to the client
        logger.exception("Inspector authorize hook failed for %s", connection.url.path)
        return False
    return bool(verdict)


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


__all__ = ["TOKEN_HEADER", "Authorize", "Tokens", "allowed", "loopback_only", "same_origin"]
