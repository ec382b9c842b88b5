"""The inspector's JSON endpoints and their security, against the in-process app (no browser)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.routing import Mount

from fastapi_events import _hooks, dispatch, drain
from fastapi_events.inspector import Inspector

from ._app import GATE, make_app, make_handler
from .conftest import BASE_URL, ClientFactory, page_token

pytestmark = pytest.mark.anyio


async def test_events_show_each_handler_run_and_its_outcome(client_for: ClientFactory) -> None:
    app = make_app()
    async with client_for(app) as client:
        assert (await client.get("/_events/api/events")).json()["events"] == []  # starts recording
        await client.post("/events/payment.captured", json=[{"fail": False}, {"fail": True}])
        await client.post("/orders/7")
        await drain(5)
        events = (await client.get("/_events/api/events")).json()["events"]
    assert [e["name"] for e in events] == ["payment.captured", "payment.captured", "order.placed"]
    ok, failed, order = events
    assert ok["outcome"] == "ok"
    assert [run["handler"] for run in ok["handlers"]] == ["tests.inspector._app.make_handler.<locals>.charge"]
    assert failed["outcome"] == "failed"
    assert "RuntimeError: card declined" in failed["handlers"][0]["error"]
    assert order["payload"] == '{"order_id": 7, "lines": [{"sku": "tea", "quantity": 2}]}'
    assert order["handlers"][0]["handler"].endswith("audit")
    assert order["duration_ms"] >= 0


async def test_an_event_shown_before_its_handlers_ran_comes_again_with_them(client_for: ClientFactory) -> None:
    app = make_app()
    GATE.clear()
    try:
        async with client_for(app) as client:
            start = (await client.get("/_events/api/events")).json()["last"]
            await client.post("/later/slow.job")
            with anyio.fail_after(10):
                # Polling, as the page does: the recorder has no event to wait on.
                while not app.state.inspector.recorder.changed_since(start):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            before = (await client.get("/_events/api/events", params={"after": start})).json()
            GATE.set()  # the handler (blocked so far) finishes
            await drain(5)
            after = (await client.get("/_events/api/events", params={"after": before["last"]})).json()
    finally:
        GATE.set()
    ((shown,), (again,)) = before["events"], after["events"]
    assert (shown["name"], shown["handlers"], shown["outcome"]) == ("slow.job", [], "no local handler")
    assert again["seq"] == shown["seq"]
    assert [run["handler"].rsplit(".", 1)[1] for run in again["handlers"]] == ["slow"]
    assert again["outcome"] == "ok"


async def test_tail_is_read_incrementally_filtered_and_bounded(client_for: ClientFactory) -> None:
    app = make_app(max_events=5)
    async with client_for(app) as client:
        first = (await client.get("/_events/api/events")).json()
        await client.post("/events/order.noted", json=list(range(12)))
        await client.post("/events/payment.noted", json=[{"n": 1}])
        await drain(5)
        everything = (await client.get("/_events/api/events", params={"after": first["last"]})).json()
        orders = (await client.get("/_events/api/events", params={"pattern": "order.*"})).json()
        later = (await client.get("/_events/api/events", params={"after": everything["last"]})).json()
    # Only the newest max_events are kept in memory.
    assert [e["payload"] for e in everything["events"]] == ["8", "9", "10", "11", '{"n": 1}']
    assert [e["name"] for e in orders["events"]] == ["order.noted"] * 4
    assert later["events"] == []
    assert sum(n for _, n in everything["rate"]) == 13


async def test_memory_stays_bounded_with_a_page_open(client_for: ClientFactory) -> None:
    from fastapi_events.inspector import _recorder, _stats

    app = make_app(max_events=50)
    recorder = app.state.inspector.recorder
    names = _recorder._MAX_KEYS + 500
    async with client_for(app) as client:
        await client.get("/_events/api/events")
        await client.post("/events/order.bulk", json=list(range(2000)))
        await client.post(f"/generated/{names}")
        await drain(10)
        events = (await client.get("/_events/api/events")).json()["events"]
    assert len(events) == 50
    assert len(recorder.events) == 50
    assert len(recorder._by_id) <= 2 * 50 + 1
    assert len(recorder.seen()) == _recorder._MAX_KEYS
    assert all(len(stats.latencies) <= _stats._LATENCY_SAMPLES for stats in recorder.handlers.values())
    assert len(recorder.rate) <= _recorder.RATE_WINDOW


async def test_handlers_view_counts_failures_and_latency(client_for: ClientFactory) -> None:
    app = make_app()
    async with client_for(app) as client:
        await client.get("/_events/api/handlers")
        await client.post("/events/payment.captured", json=[{"fail": True}, {"fail": False}, {"fail": True}])
        await client.post("/orders/1")
        await drain(5)
        view = (await client.get("/_events/api/handlers")).json()
    local = {h["function"].rsplit(".", 1)[1]: h for h in view["local"]}
    assert local["charge"]["pattern"] == "payment.*"
    assert (local["charge"]["handled"], local["charge"]["failures"]) == (3, 2)
    assert "card declined" in local["charge"]["last_error"]
    assert local["charge"]["p50_ms"] <= local["charge"]["p99_ms"]
    assert local["audit"]["dependencies"] == ["tests.inspector._app.audit_log"]
    assert (local["audit"]["handled"], local["audit"]["failures"]) == (1, 0)


async def test_with_history_off_nothing_is_recorded_and_no_hook_installed_until_someone_watches(
    client_for: ClientFactory,
) -> None:
    app = make_app(idle_after=0.2, history=0)
    async with client_for(app) as client:
        await client.post("/events/order.early", json=[1])
        await drain(5)
        assert not _hooks.on_dispatch
        assert not _hooks.on_handle
        assert not _hooks.on_handler_failure
        assert (await client.get("/_events/api/events")).json()["events"] == []
        assert _hooks.on_handle
        assert _hooks.on_dispatch
        # No request for idle_after seconds: the next event removes the hooks instead of being recorded.
        await anyio.sleep(0.3)
        await client.post("/events/order.late", json=[1])
        await drain(5)
        assert not _hooks.on_handle
        assert not _hooks.on_dispatch
        assert not app.state.inspector.recorder.events


async def test_a_page_opened_later_starts_from_the_events_and_counts_since_start(client_for: ClientFactory) -> None:
    app = make_app(idle_after=0.2)
    async with client_for(app) as client:
        for i in range(8):
            await client.post(f"/orders/{i}")
        await client.post("/events/payment.captured", json=[{"fail": True}, {"fail": False}])
        await drain(5)
        assert not _hooks.on_handle  # no page open: no per-handler-call hook
        tail = (await client.get("/_events/api/events")).json()["events"]
        assert [e["name"] for e in tail] == ["order.placed"] * 8 + ["payment.captured"] * 2
        assert [e["outcome"] for e in tail][-3:] == ["ok", "failed", "ok"]
        failed = tail[-2]["handlers"]
        assert [(h["handler"].rsplit(".", 1)[1], h["ms"]) for h in failed] == [("charge", None)]
        assert "card declined" in failed[0]["error"]
        view = (await client.get("/_events/api/handlers")).json()
        local = {h["function"].rsplit(".", 1)[1]: h for h in view["local"]}
        assert (local["audit"]["handled"], local["audit"]["failures"]) == (8, 0)
        assert (local["charge"]["handled"], local["charge"]["failures"]) == (2, 1)
        seen = {e["name"]: e["seen"] for e in (await client.get("/_events/api/catalog")).json()["events"]}
        assert (seen["order.placed"], seen["payment.captured"]) == (8, 2)
        # The page goes away; what happens meanwhile is kept too, and the counts go on.
        await anyio.sleep(0.3)
        await client.post("/orders/99")
        await drain(5)
        assert not _hooks.on_handle
        tail = (await client.get("/_events/api/events")).json()["events"]
        assert tail[-1]["name"] == "order.placed"
        assert '"order_id": 99' in tail[-1]["payload"]
        view = (await client.get("/_events/api/handlers")).json()
        assert {h["function"].rsplit(".", 1)[1]: h["handled"] for h in view["local"]}["audit"] == 9


async def test_history_memory_is_bounded(client_for: ClientFactory) -> None:
    app = make_app(history=50)
    async with client_for(app) as client:
        await client.post("/generated/3000")  # 3 000 distinct names, more than the ring holds
        await drain(5)
        history = app.state.inspector.recorder.history
        assert 50 <= history.held <= 100  # the last 50 at least, in whole batches
        tail = (await client.get("/_events/api/events?limit=1000")).json()["events"]
        assert [e["name"] for e in tail] == [f"generated.{i}" for i in range(2950, 3000)]


async def test_catalog_lists_names_patterns_and_payload_schemas(client_for: ClientFactory) -> None:
    app = make_app()
    async with client_for(app) as client:
        await client.get("/_events/api/catalog")
        await client.post("/events/shipment.sent", json=[{"id": 1}])
        await drain(5)
        catalog = {e["name"]: e for e in (await client.get("/_events/api/catalog")).json()["events"]}
    assert catalog["shipment.sent"]["seen"] == 1
    assert catalog["shipment.sent"]["schema"] is None
    assert catalog["order.*"]["pattern"] is True
    placed = catalog["order.placed"]
    assert placed["model"] == "tests.inspector._app.OrderPlaced"
    assert placed["handlers"][0].endswith("audit")
    assert placed["schema"]["properties"]["lines"]["items"] == {"$ref": "#/$defs/OrderLine"}
    assert catalog["order.cancelled"]["registered"] is True
    assert catalog["order.cancelled"]["schema"]["required"] == ["order_id"]


# -- security -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/_events/", "/_events/api/events", "/_events/asyncapi.json", "/_events/static/app.js"]
)
async def test_non_loopback_client_without_authorize_gets_403(client_for: ClientFactory, path: str) -> None:
    async with client_for(make_app(), client=("203.0.113.9", 5555)) as client:
        response = await client.get(path)
    assert response.status_code == 403


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.0.1", "::1"])
async def test_every_loopback_address_is_served(client_for: ClientFactory, host: str) -> None:
    async with client_for(make_app(), client=(host, 5555)) as client:
        assert (await client.get("/_events/")).status_code == 200
        assert (await client.get("/_events/", headers={"host": "localhost:8000"})).status_code == 200


@pytest.mark.parametrize("host", ["::ffff:10.0.0.1", "0.0.0.0", "testclient", ""])
async def test_other_addresses_are_refused(client_for: ClientFactory, host: str) -> None:
    async with client_for(make_app(), client=(host, 5555)) as client:
        assert (await client.get("/_events/")).status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"x-forwarded-for": "198.51.100.4"},  # a reverse proxy on this host: the real client is elsewhere
        {"forwarded": "for=198.51.100.4"},
        {"host": "rebound.example:8000"},  # DNS rebinding: a remote page's name resolving to 127.0.0.1
    ],
)
async def test_loopback_peer_behind_a_proxy_or_a_foreign_host_name_is_refused(
    client_for: ClientFactory, headers: dict[str, str]
) -> None:
    async with client_for(make_app()) as client:
        assert (await client.get("/_events/api/events", headers=headers)).status_code == 403


async def test_a_failing_authorize_hook_refuses(client_for: ClientFactory, caplog: pytest.LogCaptureFixture) -> None:
    def broken(connection: HTTPConnection) -> bool:
        raise LookupError("no session store")

    async with client_for(make_app(authorize=broken)) as client:
        assert (await client.get("/_events/")).status_code == 403
    assert "Inspector authorize hook failed" in caplog.text


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_authorize_hook_decides_for_every_client(client_for: ClientFactory, asynchronous: bool) -> None:
    def decide(connection: HTTPConnection) -> bool:
        return connection.headers.get("x-team") == "ops"

    async def decide_async(connection: HTTPConnection) -> bool:
        return decide(connection)

    app = make_app(authorize=decide_async if asynchronous else decide)
    async with client_for(app, client=("203.0.113.9", 5555)) as client:
        assert (await client.get("/_events/api/handlers", headers={"x-team": "ops"})).status_code == 200
        assert (await client.get("/_events/api/handlers", headers={"x-team": "dev"})).status_code == 403
    # authorize replaces the loopback rule: a loopback client is refused too when the hook says no.
    async with client_for(make_app(authorize=decide)) as client:
        assert (await client.get("/_events/")).status_code == 403


async def test_page_is_served_with_a_fresh_token_and_a_strict_policy(client_for: ClientFactory) -> None:
    async with client_for(make_app()) as client:
        redirect = await client.get("/_events")
        first, second = await client.get("/_events/"), await client.get("/_events/")
        script = await client.get("/_events/static/app.js")
    assert redirect.status_code == 307
    assert redirect.headers["location"].endswith("/_events/")
    assert page_token(first.text) != page_token(second.text)
    policy = first.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert first.headers["x-frame-options"] == "DENY"
    assert script.headers["content-type"].startswith("text/javascript")


async def test_replay_and_purge_require_token_and_same_origin(client_for: ClientFactory) -> None:
    body = {"source": "spool:/nowhere#q", "ids": ["x"]}
    async with client_for(make_app()) as client:
        token = page_token((await client.get("/_events/")).text)
        same = {"origin": BASE_URL}
        url = "/_events/api/dead-letters/replay"
        no_token = await client.post(url, json=body, headers=same)
        forged = await client.post(
            url, json=body, headers={**same, "x-inspector-token": token[:-1] + ("1" if token.endswith("0") else "0")}
        )
        no_origin = await client.post(url, json=body, headers={"x-inspector-token": token})
        cross = await client.post(url, json=body, headers={"x-inspector-token": token, "origin": "http://evil.example"})
        cross_site = await client.post(
            url, json=body, headers={"x-inspector-token": token, **same, "sec-fetch-site": "cross-site"}
        )
        accepted = await client.post(url, json=body, headers={"x-inspector-token": token, **same})
        bad = await client.post(url, json={"ids": "x"}, headers={"x-inspector-token": token, **same})
        other = await client.put(url, json=body, headers={"x-inspector-token": token, **same})
    for refused in (no_token, forged, no_origin, cross, cross_site):
        assert refused.status_code == 403, refused.text
    assert no_token.json() == {"error": "missing or invalid token"}
    assert cross.json() == {"error": "cross-origin request refused"}
    # Past the checks: an unknown source is never opened, whatever path the request names.
    assert accepted.status_code == 404
    assert accepted.json() == {"error": "no dead-letter source 'spool:/nowhere#q'"}
    assert bad.status_code == 400
    assert other.status_code == 405


async def test_works_mounted_in_plain_starlette(client_for: ClientFactory) -> None:
    inspector = Inspector()
    app: Any = Starlette(routes=[Mount("/ops/events", app=inspector.app)])
    app.state.inspector = inspector
    async with client_for(app) as client:
        page = await client.get("/ops/events/")
        document = await client.get("/ops/events/asyncapi.json")
    assert page.status_code == 200
    assert 'src="static/app.js"' in page.text
    assert document.json()["info"]["title"] == "fastapi-events app"


async def test_odd_events_and_exceptions_never_break_dispatch_or_handling(client_for: ClientFactory) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    handler = make_handler()
    app = make_app(local=handler)

    @handler.register(event_name="odd.*")
    def odd(event: Any) -> None:
        raise Unprintable()

    @app.post("/odd")
    async def emit_odd() -> dict[str, bool]:
        dispatch(["not", "hashable"], payload=1)  # dispatch() takes it; the inspector must too
        dispatch("odd.one", payload=2)
        return {"ok": True}

    async with client_for(app) as client:
        await client.get("/_events/api/events")
        assert (await client.post("/odd")).status_code == 200
        await drain(5)
        events = (await client.get("/_events/api/events")).json()["events"]
        handlers = (await client.get("/_events/api/handlers")).json()["local"]
    assert [e["name"] for e in events] == ["['not', 'hashable']", "odd.one"]
    assert events[1]["handlers"][0]["error"] == "Unprintable: <Unprintable whose str() raised>"
    (row,) = [h for h in handlers if h["function"].endswith(".odd")]
    assert row["failures"] == 1
