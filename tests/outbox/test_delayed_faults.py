"""Delayed events with real processes on a real PostgreSQL: ``kill -9`` before the due time, two relays.

Every delivery is a row of the ``deliveries`` table with the due time the app gave the event and the time the
handler ran. The relays poll once a minute, so events handled on time were woken for by the relays' timers.
"""

from __future__ import annotations

import time

import pytest

from tests._servers import wait_for
from tests.outbox.test_faults import HANDLERS, Fixture, assert_exactly_once, faults, kill  # noqa: F401 - the fixture

POLL = ("--poll-interval", "60", "--create-table")


def lateness(fixture: Fixture) -> list[float]:
    with fixture.check.connect() as conn:
        rows = conn.exec_driver_sql("SELECT handled_at - due FROM deliveries").scalars().all()
    return sorted(float(r) for r in rows)


def report(label: str, values: list[float]) -> None:
    p50, p99 = values[len(values) // 2], values[min(len(values) - 1, int(len(values) * 0.99))]
    print(f"\n{label}: {len(values)} deliveries, lateness p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")


@pytest.mark.parametrize("restart", ["before the due time", "after the due time"])
def test_sigkill_before_the_due_time_then_a_restart_delivers_once(faults: Fixture, restart: str) -> None:  # noqa: F811
    app, url = faults.start_app(FE_POLL="60")
    started = time.time()
    with_delay = {"delay": 4.0, "spread": 0.1}
    for n in range(1, 6):
        faults.post_orders_delayed(url, n, events=2, **with_delay)
    kill(app)
    assert time.time() < started + 4.0, "the app was not killed before the due time; the test proves nothing"
    assert faults.outbox_rows() == 10  # written with the transactions
    assert faults.delivered() == []
    if restart == "after the due time":
        time.sleep(max(0.0, started + 5.0 - time.time()))
    faults.start_app(FE_POLL="60")
    serving = time.time()
    wait_for(lambda: len(faults.delivered()) >= 10 * len(HANDLERS), timeout=60, message="20 deliveries")
    wait_for(lambda: faults.outbox_rows() == 0, timeout=20, message="outbox emptied")
    assert_exactly_once(faults.delivered(), 10)
    late = lateness(faults)
    report(f"kill -9, restart {restart}", late)
    assert min(late) >= 0, "handled before the due time"
    if restart == "after the due time":
        # Due while no process ran: handled as the restarted app's relay starts (before it even serves).
        with faults.check.connect() as conn:
            last = float(conn.exec_driver_sql("SELECT max(handled_at) FROM deliveries").scalar_one())
        assert last - serving <= 2.0


def test_two_relays_handle_200_delayed_events_exactly_once(faults: Fixture) -> None:  # noqa: F811
    for _ in range(2):
        faults.start_relay(*POLL)
    # Relays already waiting: their timers are set by NOTIFY as the app commits.
    wait_for(faults.relays_started, timeout=60, message="relays up")
    _, url = faults.start_app(FE_RELAY="0")  # writes only
    for n in range(1, 21):
        faults.post_orders_delayed(url, n, events=10, delay=3.0 + 0.1 * n, spread=0.01)
    wait_for(lambda: len(faults.delivered()) >= 200 * len(HANDLERS), timeout=90, message="400 deliveries")
    wait_for(lambda: faults.outbox_rows() == 0, timeout=20, message="outbox emptied")
    time.sleep(1.0)  # a duplicate would show up now
    assert_exactly_once(faults.delivered(), 200)
    late = lateness(faults)
    report("two relays, 200 events", late)
    assert late[0] >= 0, "handled before the due time"
    assert late[len(late) // 2] <= 1.0
    assert late[-1] < 10.0  # nowhere near the 60 s poll interval


def test_due_events_of_a_relay_killed_mid_lease_are_handled_by_another_as_the_lease_expires(
    faults: Fixture,  # noqa: F811
) -> None:
    doomed = faults.start_relay("--lease", "3", *POLL, FE_HANDLER_DELAY="60")  # its handlers never finish
    wait_for(faults.relays_started, timeout=60, message="the first relay up")
    _, url = faults.start_app(FE_RELAY="0")  # writes only
    faults.post_orders_delayed(url, 1, events=10, delay=1.0)  # one commit: claimed in one batch
    wait_for(lambda: leased(faults) == 10, timeout=60, message="the due events claimed by the first relay")
    # Running (poll interval 60 s) while the first relay renews its lease, then kills it: nobody notifies.
    faults.start_relay("--lease", "3", *POLL, FE_HANDLER_DELAY="0")
    wait_for(faults.relays_started, timeout=60, message="the second relay up")
    time.sleep(1.5)
    kill(doomed)
    with faults.check.connect() as conn:
        expiry = float(conn.exec_driver_sql("SELECT max(lease_until) FROM fastapi_events_outbox").scalar_one())
    assert faults.delivered() == []
    wait_for(lambda: len(faults.delivered()) >= 10 * len(HANDLERS), timeout=90, message="20 deliveries")
    wait_for(lambda: faults.outbox_rows() == 0, timeout=20, message="outbox emptied")
    assert_exactly_once(faults.delivered(), 10)
    with faults.check.connect() as conn:
        rows = conn.exec_driver_sql("SELECT handled_at FROM deliveries").scalars().all()
    after = sorted(float(r) - expiry for r in rows)
    report("held by a killed relay, after its lease expired", after)
    assert after[0] >= 0, "taken from a relay whose lease had not expired"
    # Woken by its timer for the lease expiry, not by its 60 s poll: within about a second on a quiet machine.
    assert after[len(after) // 2] <= 2.0
    assert after[-1] < 10.0


def test_while_one_relay_is_busy_with_slow_handlers_another_handles_what_falls_due_on_time(
    faults: Fixture,  # noqa: F811
) -> None:
    busy = faults.start_relay(*POLL, FE_HANDLER_DELAY="60")
    wait_for(faults.relays_started, timeout=60, message="the first relay up")
    _, url = faults.start_app(FE_RELAY="0")  # writes only
    faults.post_orders_delayed(url, 1, events=5, delay=0.5)
    wait_for(lambda: leased(faults) == 5, timeout=60, message="the first relay busy with the first events")
    other = faults.start_relay(*POLL, FE_HANDLER_DELAY="0")
    wait_for(faults.relays_started, timeout=60, message="the second relay up")
    for n in range(2, 6):
        faults.post_orders_delayed(url, n, events=5, delay=1.0, spread=0.1)
    wait_for(lambda: len(faults.delivered()) >= 20 * len(HANDLERS), timeout=90, message="40 deliveries")
    delivered = faults.delivered()
    assert_exactly_once(delivered, 20)  # the first relay's 5 events are still in its handlers
    assert {pid for *_, pid in delivered} == {other.pid}
    assert busy.poll() is None
    late = lateness(faults)
    report("beside a relay busy with slow handlers", late)
    assert late[0] >= 0, "handled before the due time"
    assert late[len(late) // 2] <= 1.0
    assert late[-1] < 10.0  # nowhere near the 60 s poll interval, nor the busy relay's 60 s handlers


def leased(fixture: Fixture) -> int:
    with fixture.check.connect() as conn:
        query = "SELECT count(*) FROM fastapi_events_outbox WHERE lease_owner IS NOT NULL"
        return int(conn.exec_driver_sql(query).scalar_one())
