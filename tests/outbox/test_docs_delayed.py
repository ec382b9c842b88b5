"""The delayed-events example of the documentation (docs_src/delayed/app.py), run as the page shows it."""

from __future__ import annotations

import runpy
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests._servers import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "docs_src" / "delayed" / "app.py"


@pytest.mark.usefixtures("fresh_local_handler")
def test_documented_reservations_expire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    monkeypatch.setenv("HOLD_SECONDS", "1.5")
    ns = runpy.run_path(str(EXAMPLE), run_name="docs_example_delayed")
    with TestClient(ns["app"], raise_server_exceptions=False) as client:
        started = time.time()
        for n in (1, 2, 3):
            assert client.post(f"/reservations/{n}").json() == {"id": n}
        assert client.post("/reservations/1").status_code == 500  # held twice: that transaction rolls back
        assert client.post("/reservations/2/confirm").json() == {"id": 2}
        wait_for(lambda: len(ns["expired"]) == 2, timeout=30, message="two reservations expired")
        assert time.time() - started >= 1.5  # not before the hold ran out
        time.sleep(0.5)
        states = [client.get(f"/reservations/{n}").json()["state"] for n in (1, 2, 3)]
    assert states == ["expired", "confirmed", "expired"]
    assert sorted(ns["expired"]) == [(1, "expire-1"), (3, "expire-3")]
