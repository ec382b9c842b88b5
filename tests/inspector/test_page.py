"""The inspector page in a real browser (Debian's chromium via Playwright), the app under uvicorn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests._app_process import AppProcesses
from tests._browser import browser, page  # noqa: F401
from tests._servers import MotoServer
from tests._sqs import Queue

# The machine is shared with other test runs: generous, since these wait for something that must happen.
WAIT_MS = 20_000


class App:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def emit(self, name: str, *payloads: Any) -> None:
        assert self.http.post(f"/events/{name}", json=list(payloads)).status_code == 200

    def open(self, view: Page) -> None:
        view.goto(self.url + "/_events/")
        expect(view.locator("#status")).to_have_text("live", timeout=WAIT_MS)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    processes = AppProcesses("tests.inspector._app:app_from_env", tmp_path)
    apps: list[App] = []

    def start_app(env: dict[str, str] | None = None) -> App:
        _, url = processes.start(env or {})
        apps.append(App(url))
        return apps[-1]

    yield start_app
    for app in apps:
        app.http.close()
    processes.close()


def tab(view: Page, name: str) -> None:
    view.click(f'#tabs button[data-tab="{name}"]')


def test_events_appear_live_and_a_failing_handler_counts_up(page: Page, start: Any) -> None:  # noqa: F811
    app = start()
    app.open(page)
    app.http.post("/orders/41")
    first = page.locator("#events tr.event").first
    expect(first.locator("td.name")).to_have_text("order.placed", timeout=WAIT_MS)
    expect(first.locator("td.outcome")).to_have_text("ok")
    expect(first.locator("code.payload")).to_have_text('{"order_id": 41, "lines": [{"sku": "tea", "quantity": 2}]}')

    tab(page, "handlers")
    charge = page.locator('#local tr[data-function$=".charge"]')
    expect(charge.locator("td").nth(0)).to_have_text("payment.*", timeout=WAIT_MS)
    expect(charge.locator("td.failures")).to_have_text("0")
    app.emit("payment.captured", {"fail": True})
    expect(charge.locator("td.failures")).to_have_text("1", timeout=WAIT_MS)
    expect(charge.locator("td.error")).to_contain_text("card declined")
    app.emit("payment.captured", {"fail": True}, {"fail": False}, {"fail": True})
    expect(charge.locator("td.failures")).to_have_text("3", timeout=WAIT_MS)
    expect(charge.locator("td.handled")).to_have_text("4")

    # Back on the tail: the failed event says which handler failed; the filter narrows by pattern.
    tab(page, "events")
    expect(page.locator("#events tr.outcome-failed").first.locator(".run.failed")).to_contain_text("charge")
    page.fill("#filter", "order.*")
    expect(page.locator("#events tr.event")).to_have_count(1)
    page.fill("#filter", "")
    expect(page.locator("#events tr.event")).to_have_count(5)
    page.click("#pause")
    app.http.post("/orders/42")
    page.wait_for_timeout(1500)  # several polling rounds: none may add the new event while paused
    expect(page.locator("#events tr.event")).to_have_count(5)
    page.click("#pause")
    expect(page.locator("#events tr.event")).to_have_count(6, timeout=WAIT_MS)


def test_a_page_opened_after_ten_events_shows_them_and_their_counts(page: Page, start: Any) -> None:  # noqa: F811
    app = start()
    for order_id in range(8):
        assert app.http.post(f"/orders/{order_id}").status_code == 200
    app.emit("payment.captured", {"fail": True}, {"fail": False})
    app.open(page)
    expect(page.locator("#events tr.event")).to_have_count(10, timeout=WAIT_MS)
    expect(page.locator("#events tr.outcome-failed")).to_have_count(1)
    expect(page.locator("#events tr.outcome-failed .run.failed")).to_contain_text("card declined")
    tab(page, "handlers")
    charge = page.locator('#local tr[data-function$=".charge"]')
    expect(charge.locator("td.handled")).to_have_text("2", timeout=WAIT_MS)
    expect(charge.locator("td.failures")).to_have_text("1")
    audit = page.locator('#local tr[data-function$=".audit"]')
    expect(audit.locator("td.handled")).to_have_text("8")


def test_xss_payload_is_shown_as_text(page: Page, start: Any) -> None:  # noqa: F811
    app = start()
    app.open(page)
    hostile = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
    app.emit("note.added", hostile)
    payload = page.locator("#events tr.event code.payload").first
    expect(payload).to_have_text(f'"{hostile}"'.replace('"window.__xss=1"', '\\"window.__xss=1\\"'), timeout=WAIT_MS)
    tab(page, "catalog")
    expect(page.locator('#catalog tr[data-name="note.added"]')).to_have_count(1, timeout=WAIT_MS)
    assert page.locator("img, #events script").count() == 0
    assert page.evaluate("window.__xss") is None


def test_posts_need_the_page_token_and_the_pages_origin(page: Page, start: Any) -> None:  # noqa: F811
    app = start()
    app.open(page)
    script = """async ([url, withToken]) => {
        const token = document.querySelector('meta[name="inspector-token"]').content;
        const headers = {"content-type": "application/json"};
        if (withToken) headers["x-inspector-token"] = token;
        try {
            const response = await fetch(url, {method: "POST", headers, body: '{"source": "s", "ids": ["i"]}'});
            return [response.status, await response.text()];
        } catch (error) {
            return [0, String(error)];
        }
    }"""
    same = "api/dead-letters/replay"
    assert page.evaluate(script, [same, False]) == [403, '{"error":"missing or invalid token"}']
    # With the token the request passes both checks (the source does not exist).
    assert page.evaluate(script, [same, True])[0] == 404
    # From another origin (the same server under another host name) the browser gets nowhere.
    other = app.url.replace("127.0.0.1", "localhost") + "/_events/api/dead-letters/replay"
    assert page.evaluate(script, [other, True])[0] in (0, 403)


def test_dead_letter_replayed_from_the_page_is_delivered(
    page: Page,  # noqa: F811
    start: Any,
    moto_server: MotoServer,
    tmp_path: Path,
) -> None:
    # The queue refuses messages over 1 KiB: a larger event is rejected by the broker and dead-lettered.
    queue = Queue(dict(moto_server.client_kwargs), attributes={"MaximumMessageSize": "1024"})
    spool = tmp_path / "spool.db"
    app = start({"FE_QUEUE": queue.name, "FE_SPOOL": str(spool), "FE_ENDPOINT": moto_server.endpoint_url})
    app.open(page)
    app.emit("report.ready", {"blob": "y" * 2000})
    app.emit("report.huge", {"blob": "z" * 3000})
    app.emit("report.small", {"n": 1})
    queue.receive(1)
    assert [r.event_name for r in queue.received] == ["report.small"]

    tab(page, "dead")
    rows = page.locator(".source tbody tr[data-id]")
    expect(rows).to_have_count(2, timeout=WAIT_MS)
    ready = rows.filter(has_text="report.ready")
    expect(ready.locator("td.error")).to_contain_text("rejected by broker")
    expect(ready.locator("code.payload")).to_contain_text('{"blob": "yyyy')
    expect(page.locator("#dead-count")).to_have_text("2")

    # The broker accepts large messages again; replay one from the page, purge the other.
    queue.client.set_queue_attributes(QueueUrl=queue.url, Attributes={"MaximumMessageSize": "262144"})
    ready.locator("button.replay").click()
    expect(page.locator("#notice")).to_have_text("replayed 1", timeout=WAIT_MS)
    rows.filter(has_text="report.huge").locator("button.purge").click()
    expect(page.locator("#notice")).to_have_text("purged 1", timeout=WAIT_MS)
    expect(rows).to_have_count(0, timeout=WAIT_MS)
    queue.receive(2)
    queue.drain_rest()
    assert [r.event_name for r in queue.received] == ["report.small", "report.ready"]
    assert queue.received[1].event == ["report.ready", {"blob": "y" * 2000}]

    tab(page, "handlers")
    forwarder = page.locator("#forwarders tr").first
    expect(forwarder.locator("td.delivered")).to_have_text("2", timeout=WAIT_MS)
    expect(forwarder.locator("td.dead-lettered")).to_have_text("2")
