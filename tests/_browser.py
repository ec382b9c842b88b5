"""A real browser for the test suite: Debian's ``chromium`` driven by Playwright for Python.

Use it from a test module with::

    from tests._browser import browser, page  # noqa: F401

    def test_inspector_page(page: Page) -> None:   # a plain *sync* test
        page.goto(f"http://127.0.0.1:{port}/_events/")
        ...

Fixtures
--------
``browser``  ``playwright.sync_api.Browser``: a chromium launched for the test, closed after it
``page``     ``playwright.sync_api.Page`` in a fresh ``BrowserContext`` of that browser (no cookies, storage or
             cache shared between tests)

Playwright's sync API refuses to run while an asyncio loop is running in the calling thread, so tests using
these fixtures must be plain sync functions (no ``pytest.mark.anyio``): start the app under uvicorn in a
subprocess (``tests._app_process``) or in a thread, then drive the page from the test.
Conversely, while Playwright is started its own loop counts as *running* in this thread, which breaks every
asyncio test after it: that is why the browser is not session-scoped (one launch costs well under a second).

No browser is downloaded: Playwright launches the system chromium (``/usr/bin/chromium``, or the path in
``FASTAPI_EVENTS_CHROMIUM``). A missing chromium or Playwright makes the test *fail* with an install hint;
nothing here skips.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests._servers import _fail_missing

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

__all__ = ["CHROMIUM_ARGS", "browser", "chromium_path", "page"]

_CHROMIUM_ENV = "FASTAPI_EVENTS_CHROMIUM"

# Headless without a sandbox (CI runs as root), and without anything that would reach out to the internet
# or slow start-up on a busy machine (updaters, sync, QUIC probes, first-run dialogs).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str:
    """The chromium executable to launch; fails the test with an install hint when there is none."""
    configured = os.environ.get(_CHROMIUM_ENV)
    candidates = [configured] if configured else ["/usr/bin/chromium", "chromium"]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    _fail_missing(
        f"chromium ({configured or '/usr/bin/chromium'})",
        "apt-get install -y chromium  (or `bash .ci/install-deps.sh`; another binary: set FASTAPI_EVENTS_CHROMIUM)",
    )
    raise AssertionError("unreachable")  # pytest.fail raised


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A headless chromium for one test; Playwright is stopped afterwards, so asyncio tests can run after it."""
    if importlib.util.find_spec("playwright") is None:
        _fail_missing("Playwright for Python", 'pip install -e ".[test]"  (or: pip install playwright)')
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=list(CHROMIUM_ARGS))
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page in its own context, so no cookie, storage or cache leaks between tests."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()
