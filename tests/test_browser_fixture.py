"""The shared browser fixtures drive a real chromium against a server on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Browser, Page

from tests._browser import browser, page  # noqa: F401

_HTML = b"""<!doctype html>
<html><head><title>before</title></head>
<body><p id="static">served over loopback</p><p id="dynamic"></p><p id="stored-before"></p>
<script>
  document.getElementById("stored-before").textContent = localStorage.getItem("seen") ?? "nothing";
  document.title = "rendered";
  document.getElementById("dynamic").textContent = String(6 * 7);
  localStorage.setItem("seen", "yes");
</script></body></html>
"""


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(_HTML)))
        self.end_headers()
        self.wfile.write(_HTML)

    def log_message(self, format: str, *args: object) -> None:  # keep the pytest output clean
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, name="test-http-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_page_runs_the_served_script(page: Page, site: str) -> None:  # noqa: F811
    response = page.goto(site)

    assert response is not None
    assert response.status == 200
    assert page.title() == "rendered"
    assert page.text_content("#static") == "served over loopback"
    assert page.text_content("#dynamic") == "42"
    assert page.text_content("#stored-before") == "nothing"


def test_each_test_gets_a_fresh_context(browser: Browser, page: Page, site: str) -> None:  # noqa: F811
    # Every test's first visit to this (module-wide, same-origin) site finds no storage left by another test.
    page.goto(site)
    assert page.text_content("#stored-before") == "nothing"
    assert browser.contexts == [page.context]

    page.reload()
    assert page.text_content("#stored-before") == "yes"  # storage works within one test


@pytest.mark.anyio
async def test_asyncio_tests_still_run_after_browser_tests() -> None:
    # Runs after the browser tests above (pytest keeps file order): Playwright's loop, left running in this
    # thread, would make anyio refuse to start this one ("Cannot run the event loop while another loop is running").
    assert await _answer() == 42


async def _answer() -> int:
    return 42
