from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.outbox._app import Database, create_orders


@pytest.fixture(params=["sqlite-sync", "sqlite-async", "postgresql-sync", "postgresql-async"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """Every database x session kind the outbox supports, with an ``orders`` table."""
    kind, mode = request.param.split("-")
    if kind == "sqlite":
        driver = "sqlite+aiosqlite" if mode == "async" else "sqlite"
        db = Database(f"{driver}:///{tmp_path / 'app.db'}", mode == "async")
    else:
        pg_url: Callable[[str], str] = request.getfixturevalue("pg_url")
        db = Database(pg_url("asyncpg" if mode == "async" else "psycopg"), mode == "async")
    engine = db.sync_engine()
    create_orders(engine)
    engine.dispose()
    return db
