"""The example service from the README works as documented."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_example_service_flows_events(capsys, fresh_local_handler, clean_schema_registry) -> None:
    import importlib
    import sys

    sys.modules.pop("examples.service", None)
    service = importlib.import_module("examples.service")  # registers its handlers on local_handler, once
    with TestClient(service.app) as client:
        created = client.post("/users", json={"email": "ada@example.com"})
        assert created.status_code == 201
        assert client.post("/users", json={"email": "not an email"}).status_code == 422
        assert client.delete(f"/users/{created.json()['id']}").status_code == 204
        audit = client.get("/audit").json()
    assert [entry["event"] for entry in audit] == ["user.created", "user.deleted"]
    assert audit[0]["payload"] == {"user_id": created.json()["id"], "email": "ada@example.com"}
    sys.modules.pop("examples.service", None)
    # Its event inspector keeps a history through process-wide hooks: an app dropped by a test must not keep them.
    (mount,) = [route for route in service.app.routes if getattr(route, "path", None) == "/_events"]
    mount.app.__self__.recorder.close()
    out = capsys.readouterr().out
    assert "('user.created', {'user_id': 1, 'email': 'ada@example.com'})" in out
    assert "('mail.sent', {'to': 'ada@example.com'})" in out
