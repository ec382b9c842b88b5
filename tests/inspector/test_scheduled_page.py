"""The inspector's Scheduled tab in a real browser: delayed outbox events listed (escaped) and cancelled."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests._app_process import AppProcesses
from tests._browser import browser, page  # noqa: F401

WAIT_MS = 20_000


def test_scheduled_events_are_listed_and_cancelled_from_the_page(page: Page, tmp_path: Path) -> None:  # noqa: F811
    processes = AppProcesses("tests.inspector._scheduled_app:app_from_env", tmp_path)
    try:
        _, url = processes.start({"FE_DB": str(tmp_path / "app.db")})
        events = [
            {"name": "invoice.reminder", "delay": 600, "id": "reminder-7", "payload": {"invoice": 7}},
            {"name": "reservation.expire", "delay": 900, "id": "hold-3", "payload": {"note": "<b>bold</b>"}},
        ]
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.post("/schedule", json={"events": events}).status_code == 200
            page.goto(url + "/_events/")
            expect(page.locator("#status")).to_have_text("live", timeout=WAIT_MS)
            page.click('#tabs button[data-tab="scheduled"]')
            rows = page.locator("#scheduled-sources tbody tr[data-id]")
            expect(rows).to_have_count(2, timeout=WAIT_MS)
            expect(rows.first).to_contain_text("invoice.reminder")  # soonest first
            expect(rows.nth(1).locator("code.payload")).to_contain_text('"<b>bold</b>"')  # shown as text
            assert page.locator("#scheduled-sources b").count() == 0

            rows.filter(has_text="reminder-7").locator("button.cancel").click()
            expect(page.locator("#notice")).to_have_text("cancelled 1", timeout=WAIT_MS)
            expect(rows).to_have_count(1, timeout=WAIT_MS)
            (source,) = http.get("/_events/api/scheduled").json()["sources"]
            assert [item["id"] for item in source["items"]] == ["hold-3"]
    finally:
        processes.close()
