"""Resume rules of the history, without a server: what a resuming subscriber gets first."""

from __future__ import annotations

import pytest

from fastapi_events.stream._entry import StreamEvent
from fastapi_events.stream._hub import Hub
from fastapi_events.stream._subscription import Subscription

pytestmark = pytest.mark.anyio


def entry(ms: int) -> StreamEvent:
    return StreamEvent((ms, 0), f"{ms}-0", "n", b"%d" % ms)


async def resume(hub: Hub, last_event_id: str) -> Subscription:
    subscription = Subscription(hub, (), maxsize=10, last_event_id=last_event_id)
    await hub.attach(subscription)
    return subscription


async def test_redis_id_ahead_of_this_process_reader_skips_what_the_client_already_has() -> None:
    hub = Hub(10, ids_from_elsewhere=True)
    hub.publish([entry(1), entry(2)])
    ahead = await resume(hub, "4-0")  # seen on another process; our reader is at 2
    fresh_ahead = await resume(Hub(10, ids_from_elsewhere=True), "4-0")
    for target in (hub, fresh_ahead.hub):
        target.publish([entry(3), entry(4), entry(5)])
    assert ahead.gap is None
    assert [e.id for e in ahead.take()] == ["5-0"]
    assert [e.id for e in fresh_ahead.take()] == ["5-0"]


async def test_memory_id_ahead_means_a_restart_and_is_a_gap() -> None:
    hub = Hub(10, ids_from_elsewhere=False)
    hub.publish([entry(1), entry(2)])
    subscription = await resume(hub, "4")
    assert subscription.gap == {"last_event_id": "4", "first_id": "1-0"}
    assert [e.id for e in subscription.take()] == ["1-0", "2-0"]


async def test_resume_right_after_the_last_evicted_event_is_no_gap() -> None:
    hub = Hub(2, ids_from_elsewhere=False)
    hub.publish([entry(1), entry(2), entry(3), entry(4)])  # keeps 3 and 4; 2 was evicted last
    exact = await resume(hub, "2")
    older = await resume(hub, "1")
    assert exact.gap is None
    assert [e.id for e in exact.take()] == ["3-0", "4-0"]
    assert older.gap == {"last_event_id": "1", "first_id": "3-0"}


async def test_replay_larger_than_the_queue_does_not_overflow() -> None:
    hub = Hub(50, ids_from_elsewhere=False)
    hub.publish([entry(n) for n in range(1, 41)])
    subscription = Subscription(hub, (), maxsize=10, replay=True)
    await hub.attach(subscription)
    hub.publish([entry(41)])
    assert not subscription.overflowed
    assert len(subscription.take()) == 41
