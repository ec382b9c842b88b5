"""The event inspector: a page showing events, handlers, failures and dead letters live, and an AsyncAPI document.

::

    from fastapi_events.inspector import Inspector

    app.mount("/_events", Inspector().app)   # loopback clients only; Inspector(authorize=...) to open it up
"""

from __future__ import annotations

from ._app import Inspector
from ._security import Authorize

__all__ = ["Authorize", "Inspector"]
