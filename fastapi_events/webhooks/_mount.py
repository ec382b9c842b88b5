"""Serving a receiver's bare mount path: ``POST /webhooks`` as well as ``POST /webhooks/``.

Starlette's ``Mount("/webhooks")`` only matches ``/webhooks/...``; for ``/webhooks`` the router answers 307 to
``/webhooks/``, and webhook senders do not follow redirects, so every delivery to the URL without the slash
would be lost. When the app starts, :class:`~fastapi_events.EventHandlerASGIMiddleware` calls the
``_hooks.on_app_start`` hooks with the app; ours adds a route for the bare path right before each mount of a
receiver, so that it wins over the redirect and over nothing else.
"""

from __future__ import annotations

import weakref
from typing import Any

from .. import _hooks
from ..typing import Receive, Scope, Send

_receivers: weakref.WeakSet[Any] = weakref.WeakSet()
_MAX_DEPTH = 8  # mounts within mounts: enough for any real app, and a bound for a cyclic one


class BarePath:
    """The ASGI app behind the added route: the receiver, at its root."""

    def __init__(self, receiver: Any) -> None:
        self.receiver = receiver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.receiver.serve_root(scope, receive, send)


def serve_bare_mount_paths(receiver: Any) -> None:
    _receivers.add(receiver)
    if _route_bare_paths not in _hooks.on_app_start:
        _hooks.on_app_start.append(_route_bare_paths)


def _route_bare_paths(app: Any) -> None:
    try:
        from starlette.routing import Mount, Route
    except ImportError:  # pragma: no cover - starlette is a dependency
        return

    def visit(router: Any, depth: int) -> None:
        routes = getattr(router, "routes", None)
        if not isinstance(routes, list) or depth > _MAX_DEPTH:
            return
        for route in list(routes):
            if not isinstance(route, Mount):
                continue
            target = getattr(route, "_base_app", route.app)
            if target in _receivers:
                done = any(
                    isinstance(getattr(r, "app", None), BarePath) and r.app.receiver is target and r.path == route.path
                    for r in routes
                )
                if route.path and not done:
                    routes.insert(routes.index(route), Route(route.path, BarePath(target), include_in_schema=False))
            else:
                visit(getattr(target, "router", target), depth + 1)

    visit(getattr(app, "router", app), 0)


__all__ = ["BarePath", "serve_bare_mount_paths"]
