"""A real chromium: EventSource and WebSocket in a page get the events requests dispatch, and EventSource resumes
without loss after the server dropped it."""

from __future__ import annotations

import runpy
from pathlib import Path

import httpx
from playwright.sync_api import Page

from fastapi_events.stream import EventStream
from tests.stream.apps import make_app, serve


def dispatch(base: str, *payloads: object) -> None:
    response = httpx.post(f"{base}/dispatch/order.placed", json=list(payloads))
    assert response.status_code == 200


def test_event_source_receives_events_and_resumes_without_loss(page: Page) -> None:
    stream = EventStream()
    with serve(make_app(stream)) as base:
        page.goto(f"{base}/page")
        page.wait_for_function("window.opens === 1 && window.wsOpen === true")
        dispatch(base, *range(5))
        page.wait_for_function("window.seen.length === 5")
        stream.close_subscribers()  # the server drops every stream; the browser reconnects by itself
        dispatch(base, *range(5, 10))  # while it is away
        page.wait_for_function("window.opens === 2", timeout=20_000)
        dispatch(base, 10)
        page.wait_for_function("window.seen.length >= 11", timeout=20_000)
        seen = page.evaluate("window.seen")
        ws_seen = page.evaluate("window.wsSeen")
    assert [item["payload"] for item in seen] == list(range(11))
    assert [item["id"] for item in seen] == [str(n) for n in range(1, 12)]
    # The WebSocket got the first five before it was closed too (no automatic reconnect for WebSockets).
    assert [(item["id"], item["name"], item["payload"]) for item in ws_seen[:5]] == [
        (str(n + 1), "order.placed", n) for n in range(5)
    ]


def test_documented_example_in_the_browser(page: Page) -> None:
    example = Path(__file__).resolve().parents[2] / "docs_src" / "streams" / "app.py"  # docs/streams.md
    app = runpy.run_path(str(example))["app"]
    with serve(app) as base:
        page.goto(f"{base}/")
        page.wait_for_function("source.readyState === EventSource.OPEN")
        assert httpx.post(f"{base}/orders/7").json() == {"id": 7}
        assert httpx.post(f"{base}/orders/8").json() == {"id": 8}
        page.wait_for_function("document.querySelectorAll('#orders li').length === 2")
        items = page.locator("#orders li").all_text_contents()
    assert items == ["#1: order 7", "#2: order 8"]
