"""One contract, every broker: forwarder -> broker -> consumer -> handler, with failures on each side.

Each test runs against the in-memory broker and against real servers (moto_server SQS, the Pub/Sub emulator,
tansu Kafka, redis-server). Consumers of real brokers are ``python -m fastapi_events consume`` processes, so
SIGKILL and SIGTERM are real signals; the in-memory broker's live in this process (kill = cancel everything).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fastapi_events.delivery import ForwardHandler
from fastapi_events.dispatcher import dispatch
from fastapi_events.middleware import EventHandlerASGIMiddleware
from tests.consumer.e2e_handlers import peak_concurrency

from ._cases import MAX_ATTEMPTS, BrokerCase, Consumers, case_params, make_case

pytestmark = pytest.mark.anyio


def make_app(forwarder: ForwardHandler) -> FastAPI:
    app = FastAPI()
    app.add_middleware(EventHandlerASGIMiddleware, handlers=[forwarder])

    @app.post("/events/{name}/{n}")
    async def emit(name: str, n: int, delay: float | None = None) -> dict[str, int]:
        dispatch(name, {"n": n} if delay is None else {"n": n, "delay": delay})
        return {"n": n}

    return app


class Producer:
    """The web app forwarding to the case's broker, driven through ASGI."""

    def __init__(self, forwarder: ForwardHandler) -> None:
        self.forwarder = forwarder
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(forwarder)), base_url="http://app")

    async def emit(self, name: str, numbers: range | list[int], **query: Any) -> None:
        for n in numbers:
            response = await self.client.post(f"/events/{name}/{n}", params=query)
            assert response.status_code == 200

    async def delivered(self, count: int) -> None:
        await self.forwarder.flush(60)
        assert self.forwarder.stats.delivered == count


class Contract:
    """One broker of the suite: fresh destinations on it, consumers and producers, all stopped at the end."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.request = request
        self.name: str = request.param
        self.tmp_path = tmp_path
        self.monkeypatch = monkeypatch
        self._consumers: list[Consumers] = []
        self._producers: list[Producer] = []

    def case(self, *, ordered: bool = False, **options: str) -> BrokerCase:
        return make_case(self.request, self.name, ordered=ordered, **options)

    def consumers(self, case: BrokerCase) -> Consumers:
        self._consumers.append(Consumers(case, self.tmp_path, self.monkeypatch))
        return self._consumers[-1]

    def producer(self, case: BrokerCase, **options: Any) -> Producer:
        self._producers.append(Producer(case.make_forwarder(**options)))
        return self._producers[-1]

    async def close(self) -> None:
        for consumers in self._consumers:
            await consumers.close()
        for producer in self._producers:
            await producer.client.aclose()
            await producer.forwarder.shutdown()


@pytest.fixture
async def contract(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Contract]:
    made = Contract(request, tmp_path, monkeypatch)
    yield made
    await made.close()


def parametrize_cases() -> Any:
    return pytest.mark.parametrize("contract", case_params(), indirect=True)


@parametrize_cases()
async def test_delivers_retries_dead_letters_and_rejects_malformed(contract: Contract) -> None:
    case = contract.case()
    producer = contract.producer(case)
    await producer.emit("item.created", range(40))
    await producer.emit("flaky.created", range(100, 103))  # fail once, then succeed
    await producer.emit("broken.created", [200])  # fails every attempt
    await producer.delivered(44)
    case.publish_raw(b"{not json")
    consumers = contract.consumers(case)
    first = await consumers.start()
    expected = {*range(40), *range(100, 103)}

    def finished() -> bool:
        return set(consumers.done()) >= expected and len(case.dead_letters()) >= 2

    await consumers.wait_until(finished, 90, "every event handled and two dead letters")
    assert await consumers.stop(first) == 0, consumers.tails()
    assert sorted(consumers.done()) == sorted(expected)  # each once: nothing redelivered after success
    for n in range(100, 103):
        assert sum(line.split()[0] == "start" and line.endswith(f" {n}") for line in consumers.lines()) == 2
    dead = {d.event_name or "?": d for d in case.dead_letters()}
    assert set(dead) == {"broken.created", "?"}, dead
    broken = dead["broken.created"]
    assert f"handler failed after {MAX_ATTEMPTS} attempt(s)" in broken.reason
    assert "broken handler" in broken.reason
    assert broken.attributes["dead_letter_attempts"] == str(MAX_ATTEMPTS)
    assert "malformed message" in dead["?"].reason
    assert "not JSON" in dead["?"].reason


@parametrize_cases()
async def test_keeps_per_key_order(contract: Contract) -> None:
    case = contract.case(ordered=True)
    producer = contract.producer(case, key=lambda event: str(event[1]["n"] % 4))
    # Within a key, slow and fast events alternate: handled concurrently they would finish out of order.
    for n in range(48):
        await producer.emit("item.created", [n], delay=0.05 if n % 8 < 4 else 0.0)
    await producer.delivered(48)
    consumers = contract.consumers(case)
    first = await consumers.start(concurrency=8)
    await consumers.wait_until(lambda: len(consumers.done()) >= 48, 90, "all 48 events")
    assert await consumers.stop(first) == 0, consumers.tails()
    done = consumers.done()
    assert sorted(done) == list(range(48))
    for key in range(4):
        assert [n for n in done if n % 4 == key] == list(range(key, 48, 4))


@parametrize_cases()
async def test_a_consumer_killed_mid_stream_and_restarted_loses_nothing(contract: Contract) -> None:
    # SQS: a 5 s visibility timeout (renewed while held) brings the killed consumer's messages back sooner.
    case = contract.case(**({"visibility_timeout": "5"} if contract.name == "sqs" else {}))
    producer = contract.producer(case)
    consumers = contract.consumers(case)
    victim = await consumers.start(delay=0.005)
    other = await consumers.start(delay=0.005)
    await producer.emit("item.created", range(150))
    await consumers.wait_until(lambda: len(consumers.done()) >= 30, 60, "the consumers to get going")
    await consumers.kill(victim)  # mid-stream, with messages in flight
    await producer.emit("item.created", range(150, 300))
    restarted = await consumers.start(delay=0.005)
    await producer.delivered(300)
    # Messages the killed consumer held come back when their lease ends.
    await consumers.wait_until(lambda: set(consumers.done()) >= set(range(300)), 180, "every event handled")
    codes = [await consumers.stop(index) for index in (other, restarted)]
    assert codes == [0, 0], consumers.tails()
    assert set(consumers.done()) == set(range(300))  # at least once; a killed consumer's work may be redone
    if not case.in_process:
        assert consumers.pid_count() >= 2  # the work was shared


@parametrize_cases()
async def test_sigterm_finishes_in_flight_handlers_then_exits_0(contract: Contract) -> None:
    case = contract.case()
    producer = contract.producer(case)
    await producer.emit("item.created", range(8), delay=1.5)
    await producer.delivered(8)
    consumers = contract.consumers(case)
    first = await consumers.start(concurrency=2)

    def started() -> list[int]:
        return [int(line.split()[2]) for line in consumers.lines() if line.startswith("start ")]

    await consumers.wait_until(lambda: len(started()) >= 2, 60, "two handlers to start")
    assert await consumers.stop(first) == 0, consumers.tails()
    in_flight = set(started())
    assert in_flight
    assert in_flight <= set(consumers.done())  # every handler that had started was let finish
    # The rest was left unacknowledged, for the next consumer.
    second = await consumers.start(concurrency=8)
    await consumers.wait_until(lambda: set(consumers.done()) >= set(range(8)), 90, "the rest to be handled")
    assert await consumers.stop(second) == 0, consumers.tails()


@parametrize_cases()
async def test_handler_timeout_retries_then_dead_letters_never_running_a_message_twice_at_once(
    contract: Contract,
) -> None:
    # Leases shorter than the timeout: without extension another consumer would take the message mid-attempt.
    # (2 s, renewed every 0.7 s: a busy machine may delay a renewal by a second and still hold it.)
    lease = {"sqs": {"visibility_timeout": "2"}, "redis": {"claim_idle": "2"}}
    case = contract.case(**lease.get(contract.name, {}))
    producer = contract.producer(case)
    consumers = contract.consumers(case)
    # One slot each: while the hanging attempt holds it, nothing else of that consumer touches the broker, so
    # only the lease renewal stands between the message and the other consumer.
    one = await consumers.start(handler_timeout=4.0, concurrency=1)
    two = await consumers.start(handler_timeout=4.0, concurrency=1)
    # Kafka: events only once the group is settled - a rebalance in the middle of an attempt hands the
    # uncommitted message out again, which is at-least-once delivery, not a lease that lapsed.
    await consumers.wait_until(consumers.assigned, 60, "both consumers to have partitions")
    await producer.emit("hang.created", [0])
    await producer.emit("item.created", range(1, 21))
    await producer.delivered(21)

    def hung_out() -> bool:
        return any(d.event_name == "hang.created" for d in case.dead_letters())

    await consumers.wait_until(hung_out, 120, "the hanging event to be dead-lettered")
    await consumers.wait_until(lambda: set(consumers.done()) >= set(range(1, 21)), 60, "the other events")
    assert [await consumers.stop(index) for index in (one, two)] == [0, 0], consumers.tails()
    attempts = [line for line in consumers.lines() if line.split()[0] == "start" and line.endswith(" 0")]
    stops = [line for line in consumers.lines() if line.split()[0] == "stop" and line.endswith(" 0")]
    if contract.name == "pubsub":
        # Without a dead-letter policy on the subscription Pub/Sub does not count deliveries: each consumer
        # counts those it saw, so with two of them the budget can run to 2 * (MAX_ATTEMPTS - 1) + 1.
        assert MAX_ATTEMPTS <= len(attempts) <= 2 * MAX_ATTEMPTS - 1, consumers.lines()
    else:
        assert len(attempts) == MAX_ATTEMPTS, consumers.lines()
    assert len(stops) == len(attempts)  # every attempt was cancelled
    assert peak_concurrency(str(consumers.out))[0] == 1, consumers.lines()
    [dead] = [d for d in case.dead_letters() if d.event_name == "hang.created"]
    assert "timed out after 4s" in dead.reason
