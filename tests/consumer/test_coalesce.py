"""Acknowledgements finished in the same loop tick go out in one flush; each caller sees its own outcome."""

from __future__ import annotations

import asyncio

import pytest

from fastapi_events.consumer._coalesce import Coalescer

pytestmark = pytest.mark.anyio


async def test_same_tick_submits_share_one_flush() -> None:
    flushed: list[list[int]] = []

    async def flush(items: list[int]) -> None:
        await asyncio.sleep(0)
        flushed.append(items)

    coalescer: Coalescer[int] = Coalescer(flush)
    await asyncio.gather(*(coalescer.submit(n) for n in range(50)))
    await coalescer.submit(99)
    assert flushed == [list(range(50)), [99]]


async def test_max_items_splits_batches() -> None:
    flushed: list[list[int]] = []

    async def flush(items: list[int]) -> None:
        flushed.append(items)

    coalescer: Coalescer[int] = Coalescer(flush, max_items=10)
    await asyncio.gather(*(coalescer.submit(n) for n in range(25)))
    assert [len(batch) for batch in flushed] == [10, 10, 5]
    assert sorted(n for batch in flushed for n in batch) == list(range(25))


async def test_a_failed_flush_raises_in_every_caller_of_that_batch() -> None:
    async def flush(items: list[int]) -> None:
        raise ConnectionError("down")

    coalescer: Coalescer[int] = Coalescer(flush)
    results = await asyncio.gather(*(coalescer.submit(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)


async def test_aclose_waits_for_flushes_in_progress() -> None:
    release = asyncio.Event()
    flushed: list[list[int]] = []

    async def flush(items: list[int]) -> None:
        await release.wait()
        flushed.append(items)

    coalescer: Coalescer[int] = Coalescer(flush)
    waiter = asyncio.ensure_future(coalescer.submit(1))
    await asyncio.sleep(0.01)
    waiter.cancel()  # the caller gives up; the acknowledgement still goes out
    closing = asyncio.ensure_future(coalescer.aclose())
    await asyncio.sleep(0.01)
    assert not closing.done()
    release.set()
    await closing
    assert flushed == [[1]]
