"""``Inspector``: the page and its JSON endpoints, one small ASGI app to mount anywhere.

Endpoints, relative to where it is mounted (JSON unless said otherwise)::

    GET  /                       the page (HTML; embeds the token for the POSTs below)
    GET  /static/{app.js,style.css}
    GET  /api/events?after=N&pattern=GLOB&limit=N
                                 recent events added or updated (handler runs) since the response that said
                                 "last": N (oldest first), and events/s of the last minutes
    GET  /api/handlers           local registrations, forwarders, consumers, outboxes, with their counts
    GET  /api/dead-letters       dead letters per spool/outbox source, and recent dead-letter notifications
    POST /api/dead-letters/replay  {"source": ID, "ids": [...]}   (token + same-origin)
    POST /api/dead-letters/purge   {"source": ID, "ids": [...]}   (token + same-origin)
    GET  /api/scheduled          delayed outbox events not due yet, per outbox
    POST /api/scheduled/cancel   {"source": ID, "ids": [...]}   (token + same-origin)
    GET  /api/catalog            event names seen or registered, patterns handled, payload JSON schemas
    GET  /asyncapi.json          AsyncAPI 3.0 document of the app

Every ``/api`` request keeps live recording on (see :mod:`._recorder`); ``/asyncapi.json`` does not.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..codec import json_default
from . import _asyncapi, _catalog, _components, _deadletters, _scheduled
from ._components import milliseconds
from ._recorder import EventRecord, Recorder
from ._security import TOKEN_HEADER, Authorize, Tokens, allowed, same_origin

_PREVIEW_CHARS = 2000
_MAX_BODY = 1 << 20
_MAX_IDS = 1000
_CANCEL = "/api/scheduled/cancel"
_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
# No inline script or style at all: even markup that slipped into the page could not run.
_PAGE_HEADERS = {
    **_HEADERS,
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
}
_STATIC_TYPES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("static").joinpath(name).read_text("utf-8")


def _json_fallback(value: Any) -> Any:
    try:
        return json_default(value)
    except TypeError:
        return repr(value)


def preview(payload: Any) -> str:
    try:
        text = json.dumps(payload, ensure_ascii=False, default=_json_fallback)
    except (TypeError, ValueError):
        text = repr(payload)
    return text if len(text) <= _PREVIEW_CHARS else text[:_PREVIEW_CHARS] + "\u2026"


def event_json(record: EventRecord) -> dict[str, Any]:
    runs = list(record.runs)
    failed = any(error is not None for _, _, error in runs)
    # Runs recorded while no page was open have no duration. Different functions of one event run
    # concurrently: the slowest is the event's duration.
    durations = [seconds for _, seconds, _ in runs if seconds is not None]
    return {
        "seq": record.seq,
        "time": record.time,
        "name": record.name,
        "source": record.source,
        "payload": preview(record.event[1]),
        "handlers": [
            {"handler": handler, "ms": milliseconds(seconds), "error": error} for handler, seconds, error in runs
        ],
        "outcome": "failed" if failed else ("ok" if runs else "no local handler"),
        "duration_ms": milliseconds(max(durations)) if durations else None,
    }


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


class Inspector:
    """Events, handlers, failures and dead letters of this process, live in the browser.

    ``app.mount("/_events", Inspector().app)``. Only loopback clients are served unless ``authorize``
    (sync or async, taking Starlette's ``HTTPConnection``, returning a true value to allow) says otherwise;
    everything else gets 403. It describes the app it is mounted in (the ``EventHandlerASGIMiddleware`` around
    it); served outside any middleware, every middleware of the process. ``max_events`` bounds the tail kept in
    memory; detailed recording stops ``idle_after`` seconds after the last request. Until a page opens, and
    between two visits, the last ``history`` events (with their outcomes) and the counts since start are kept,
    so a page opened later starts from them; ``history=0`` turns that off, leaving no cost at all while no
    page is open.
    """

    def __init__(
        self,
        authorize: Authorize | None = None,
        *,
        max_events: int = 500,
        idle_after: float = 60.0,
        history: int = 1000,
    ) -> None:
        self.authorize = authorize
        self.recorder = Recorder(max_events=max_events, idle_after=idle_after, history=history)
        self._tokens = Tokens()
        # Read here, not on the event loop at the first page load.
        self._assets = {name: _asset(name) for name in ("index.html", *_STATIC_TYPES)}
        self.app: ASGIApp = self._asgi

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # served on its own rather than mounted
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self.recorder.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        request = Request(scope, receive)
        response = await self._respond(request)
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        if not await allowed(request, self.authorize):
            return PlainTextResponse("forbidden", status_code=403, headers=_HEADERS)
        path = _route_path(request.scope)
        method = request.method
        if path == "":
            return RedirectResponse(request.scope.get("root_path", "") + "/", headers=_HEADERS)
        if method == "POST" and path in ("/api/dead-letters/replay", "/api/dead-letters/purge", _CANCEL):
            return await self._act(request, path.rsplit("/", 1)[1])
        if method not in ("GET", "HEAD"):
            return JSONResponse({"error": "method not allowed"}, status_code=405, headers=_HEADERS)
        if path == "/":
            return self._page()
        if path.startswith("/static/") and path[8:] in _STATIC_TYPES:
            name = path[8:]
            return Response(self._assets[name], media_type=_STATIC_TYPES[name], headers=_HEADERS)
        if path == "/asyncapi.json":
            app = request.scope.get("app")
            # The user's app: FastAPI has a title and a version, a bare Starlette app neither.
            title = str(getattr(app, "title", "") or "fastapi-events app")
            version = str(getattr(app, "version", "") or "0.0.0")
            seen = self.recorder.seen(_components.runtime_ids())
            return JSONResponse(_asyncapi.document(seen, title=title, version=version), headers=_HEADERS)
        if path.startswith("/api/"):
            self.recorder.touch()
            if path == "/api/events":
                return self._events(request)
            if path == "/api/handlers":
                return JSONResponse(_components.handlers_view(self.recorder), headers=_HEADERS)
            if path == "/api/dead-letters":
                return JSONResponse(await _deadletters.listing(list(self.recorder.dead)), headers=_HEADERS)
            if path == "/api/scheduled":
                return JSONResponse(await _scheduled.listing(), headers=_HEADERS)
            if path == "/api/catalog":
                return JSONResponse(
                    _catalog.catalog_view(self.recorder.seen(_components.runtime_ids())), headers=_HEADERS
                )
        return JSONResponse({"error": "not found"}, status_code=404, headers=_HEADERS)

    def _page(self) -> Response:
        # The token is url-safe base64 and hex only: nothing in it needs escaping inside the attribute.
        html = self._assets["index.html"].replace("{{token}}", self._tokens.issue())
        return Response(html, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    def _events(self, request: Request) -> Response:
        params = request.query_params
        after = _int(params.get("after"), 0)
        limit = max(1, min(_int(params.get("limit"), 200), self.recorder.max_events))
        pattern = params.get("pattern") or None
        records = self.recorder.changed_since(after, _components.runtime_ids())
        if pattern is not None:
            records = [r for r in records if fnmatchcase(r.name, pattern)]
        records = records[-limit:]
        return JSONResponse(
            {
                "watching_since": self.recorder.watching_since,
                "last": self.recorder.version,
                "events": [event_json(record) for record in records],
                "rate": self.recorder.rate,
            },
            headers=_HEADERS,
        )

    async def _act(self, request: Request, action: str) -> Response:
        if not same_origin(request):
            return JSONResponse({"error": "cross-origin request refused"}, status_code=403, headers=_HEADERS)
        if not self._tokens.valid(request.headers.get(TOKEN_HEADER)):
            return JSONResponse({"error": "missing or invalid token"}, status_code=403, headers=_HEADERS)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_BODY:
                return JSONResponse({"error": "request body too large"}, status_code=413, headers=_HEADERS)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested too deep, well within the size limit
            return JSONResponse({"error": "body is not JSON"}, status_code=400, headers=_HEADERS)
        source_id = data.get("source") if isinstance(data, dict) else None
        ids = data.get("ids") if isinstance(data, dict) else None
        if not isinstance(source_id, str) or not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return JSONResponse(
                {"error": 'expected {"source": "<source id>", "ids": ["<event id>", ...]}'},
                status_code=400,
                headers=_HEADERS,
            )
        if not ids or len(ids) > _MAX_IDS:
            return JSONResponse({"error": f"give 1 to {_MAX_IDS} ids"}, status_code=400, headers=_HEADERS)
        source = _deadletters.find(source_id)
        if source is None:
            what = "outbox" if action == "cancel" else "dead-letter source"
            return JSONResponse({"error": f"no {what} {source_id!r}"}, status_code=404, headers=_HEADERS)
        if action == "cancel":
            problem = f"{source_id!r} is not an outbox" if source.kind != "outbox" else _scheduled.invalid_id(ids)
            if problem is not None:
                return JSONResponse({"error": problem}, status_code=400, headers=_HEADERS)
        try:
            if action == "cancel":
                result = await _scheduled.cancel(source, ids)
            else:
                result = await _deadletters.act(source, action, ids)
        except Exception as exc:
            return JSONResponse(
                {"error": f"{action} failed: {type(exc).__name__}: {exc}"}, status_code=500, headers=_HEADERS
            )
        return JSONResponse(result, headers=_HEADERS)


def _route_path(scope: Scope) -> str:
    """The path below the mount point (Starlette keeps the full path and puts the prefix in ``root_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :]
    return path


__all__ = ["Inspector"]
