"""PostgreSQL ``LISTEN``: a commit in any process wakes this process's relay at once (polling is the safety net).

The listener holds a connection of its own, made with psycopg 3 (async) when installed, else asyncpg - whatever
driver the outbox's engine uses. A lost connection (database restart) is re-made with backoff; meanwhile the
relay keeps polling, so nothing waits longer than its poll interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ._db import Database

logger = logging.getLogger("fastapi_events.outbox")


def _dsn(db: Database) -> str:
    return db.sync_engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _quote(channel: str) -> str:
    return '"' + channel.replace('"', '""') + '"'


async def _listen_psycopg(dsn: str, channel: str, wake: Callable[[], None], ready: Callable[[], None]) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(f"LISTEN {_quote(channel)}")
        ready()
        wake()  # commits made while we were not listening
        async for _ in conn.notifies():
            wake()


async def _listen_asyncpg(dsn: str, channel: str, wake: Callable[[], None], ready: Callable[[], None]) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_lost(_: object) -> None:
        if not lost.done():
            lost.set_result(None)

    try:
        conn.add_termination_listener(on_lost)
        await conn.add_listener(channel, lambda *_: wake())
        ready()
        wake()
        await lost
        raise ConnectionError("LISTEN connection closed")
    finally:
        await conn.close()


async def listen(db: Database, channel: str, wake: Callable[[], None]) -> None:
    """Run until cancelled; ``wake()`` on every notification on ``channel``."""
    try:
        import psycopg  # noqa: F401

        run = _listen_psycopg
    except ImportError:
        try:
            import asyncpg  # noqa: F401

            run = _listen_asyncpg
        except ImportError:
            logger.info("outbox: neither psycopg nor asyncpg installed; relays poll without LISTEN/NOTIFY")
            return
    failures = 0

    def ready() -> None:
        nonlocal failures
        if failures:
            logger.warning("outbox: LISTEN %s re-established after %d failure(s)", channel, failures)
        failures = 0

    dsn = _dsn(db)
    while True:
        try:
            await run(dsn, channel, wake, ready)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            delay = min(5.0, 0.1 * 2 ** min(failures, 10))
            if failures == 1 or failures % 10 == 0:
                logger.warning(
                    "outbox: LISTEN %s lost (%s: %s); reconnecting in %.1fs", channel, type(exc).__name__, exc, delay
                )
            await asyncio.sleep(delay)
